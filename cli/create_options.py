"""What ``create``/``run`` (and build's RUN) ask of a new container.

Its own module so that the readers of containers (``diff``, ``ps``, ``inspect``) do not
load it; a :class:`cli.values.Record`, not a dataclass, so that ``run`` does not import
dataclasses (and inspect with it: ~5 ms) either.
"""

from __future__ import annotations

from types import MappingProxyType

from cli.values import Record


class CreateOptions(Record):
    """image, command, then (defaults) name, entrypoint, env (KEY=VALUE tuple), workdir,
    user, hostname, tty, open_stdin, network ("bridge"), ports (-p mappings:
    cli.network.PortMapping as dicts, for the bridge network), auto_remove, labels
    (KEY=VALUE, over the image's labels), stop_signal, security (runtime.Security fields:
    cap_add, cap_drop, privileged, read_only), mounts (OCI runtime-spec mounts from
    -v/--mount/--tmpfs, cli.mounts)."""

    __slots__ = FIELDS = ("image", "command", "name", "entrypoint", "env", "workdir", "user",
                          "hostname", "tty", "open_stdin", "network", "ports", "auto_remove",
                          "labels", "stop_signal", "security", "mounts")
    DEFAULTS = (None, None, (), None, None, None, False, False, "bridge", (), False, (), None,
                MappingProxyType({}), ())
