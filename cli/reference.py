"""Image references, parsed once into typed values, with Docker's rules.

``busybox`` means ``docker.io/library/busybox:latest``; ``me/x`` means
``docker.io/me/x``; a first component with a ``.`` or ``:`` or equal to
``localhost`` is a registry host (``127.0.0.1:5000/x``, ``localhost/x``).
Repository paths are lowercase; tags are ``[\\w][\\w.-]{0,127}``; digests are
``ALGO:HEX`` (sha256 needs 64 hex digits). Anything else raises
``UserError("invalid reference format: …")`` as Docker's CLI says it.

Display names (``familiar``) drop ``docker.io/`` and ``library/`` again, as
``docker images`` shows them.
"""

from __future__ import annotations

import re
from cli.errors import UserError
from cli.values import Record

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

# Patterns, not compiled objects: re compiles each on its first use (and caches it), so
# importing this module, which every store user does, costs no regex compilation.
_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_HEX64 = r"[a-f0-9]{64}"


def is_hex64(text: str) -> bool:
    """64 lowercase hex digits: an image or container id in full."""
    return re.fullmatch(_HEX64, text) is not None


class Reference(Record):
    """A normalized reference: ``domain/path[:tag][@digest]``."""

    FIELDS = __slots__ = ("domain", "path", "tag", "digest")
    DEFAULTS = (None, None)
    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """The full repository name, e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The repository as Docker displays it: ``busybox``, ``me/x``, ``localhost:5000/x``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in self.path[len(OFFICIAL_REPO_PREFIX):]:
            return self.path[len(OFFICIAL_REPO_PREFIX):]
        return self.path

    def with_default_tag(self) -> "Reference":
        """``busybox`` → ``busybox:latest``; a reference with a tag or digest is unchanged."""
        if self.tag is None and self.digest is None:
            return Reference(self.domain, self.path, DEFAULT_TAG, None)
        return self

    def with_tag(self, tag: str) -> "Reference":
        return Reference(self.domain, self.path, tag, None)

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()

    @property
    def familiar(self) -> str:
        """``busybox:latest``, ``me/x@sha256:…``: the short form users type."""
        return self.familiar_name + self._suffix()


def parse_reference(text: str) -> Reference:
    """Parse and normalize a reference, as Docker's ``ParseNormalizedNamed``.

    No default tag is added; use :meth:`Reference.with_default_tag`.
    """
    if not text:
        raise UserError("invalid reference format")
    remainder, digest = text, None
    if "@" in remainder:
        remainder, digest = remainder.split("@", 1)
        if not re.fullmatch(_DIGEST, digest) or (
                digest.startswith("sha256:") and not is_hex64(digest[7:])):
            raise UserError(f"invalid reference format: {text}")
    tag = None
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1:]
        if not re.fullmatch(_TAG, tag):
            raise UserError(f"invalid reference format: {text}")
    domain, path = split_domain(remainder)
    if domain is None or not re.fullmatch(_DOMAIN, domain):
        raise UserError(f"invalid reference format: {text}")
    if not re.fullmatch(_PATH, path):
        if re.fullmatch(_PATH, path, re.IGNORECASE):
            raise UserError("invalid reference format: repository name "
                            f"({path}) must be lowercase")
        raise UserError(f"invalid reference format: {text}")
    if len(f"{domain}/{path}") > NAME_TOTAL_LENGTH_MAX:
        raise UserError(f"invalid reference format: repository name must not be more "
                        f"than {NAME_TOTAL_LENGTH_MAX} characters")
    return Reference(domain, path, tag, digest)


def split_domain(name: str) -> tuple[str | None, str]:
    """Docker's rule for whether the first component names a registry host."""
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"
                   and first.lower() == first):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if not path:
        return None, path
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    return domain, path


def parse_tagged(text: str) -> Reference:
    """A reference to create (tag, import, commit target): a name with a tag, no digest.

    Docker refuses 64-hex repository names here, since they would read as image ids.
    """
    ref = parse_reference(text)
    if ref.digest is not None:
        raise UserError(f"invalid reference format: {text} (a digest cannot be used as a tag)")
    if is_hex64(text.split(":")[0]):
        raise UserError(f"invalid repository name ({text}), cannot specify 64-byte "
                        "hexadecimal strings")
    return ref.with_default_tag()


def try_parse(text: str) -> Reference | None:
    """Parse, or None for text that is not a reference (image ids, prefixes…)."""
    try:
        return parse_reference(text)
    except UserError:
        return None
