"""Small immutable records, as ``@dataclass(frozen=True)`` made them, without importing
dataclasses (and inspect with it: ~5 ms) at the start of every command that reads the
store."""

from __future__ import annotations


class Record:
    """Fields named by ``FIELDS`` (in order; also the subclass's ``__slots__``), defaults
    for the last ones in ``DEFAULTS``; equality and hashing over ``COMPARED`` (default:
    all fields). Instances cannot be changed."""

    __slots__ = ()
    FIELDS: tuple[str, ...] = ()
    DEFAULTS: tuple = ()
    COMPARED: tuple[str, ...] | None = None

    def __init__(self, *args, **kwargs) -> None:
        fields = self.FIELDS
        name = type(self).__name__
        if len(args) > len(fields):
            raise TypeError(f"{name}() takes {len(fields)} arguments, {len(args)} given")
        values = dict(zip(fields, args))
        for key, value in kwargs.items():
            if key not in fields or key in values:
                raise TypeError(f"{name}() got an unexpected or repeated argument {key!r}")
            values[key] = value
        first_default = len(fields) - len(self.DEFAULTS)
        for i, field in enumerate(fields):
            if field not in values:
                if i < first_default:
                    raise TypeError(f"{name}() missing argument {field!r}")
                values[field] = self.DEFAULTS[i - first_default]
            object.__setattr__(self, field, values[field])

    def __setattr__(self, key, value):
        raise AttributeError(f"cannot assign to field {key!r}")

    def __delattr__(self, key):
        raise AttributeError(f"cannot delete field {key!r}")

    def _key(self) -> tuple:
        return tuple(getattr(self, f) for f in (self.COMPARED or self.FIELDS))

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def as_dict(self) -> dict:
        """The fields and their values (``dataclasses.asdict`` of a flat record)."""
        return {f: getattr(self, f) for f in self.FIELDS}

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.FIELDS)
        return f"{type(self).__name__}({inner})"
