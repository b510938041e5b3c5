"""What ``create``/``run`` (and build's RUN) ask of a new container.

Its own module so that the readers of containers (``diff``, ``ps``, ``inspect``) do not
import dataclasses, which only the verbs that create containers need.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CreateOptions:
    image: str
    command: list[str]
    name: str | None = None
    entrypoint: str | None = None
    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    tty: bool = False
    open_stdin: bool = False
    network: str = "bridge"
    #: -p mappings (cli.network.PortMapping as dicts), for the bridge network.
    ports: tuple[dict, ...] = ()
    auto_remove: bool = False
    labels: tuple[str, ...] = ()               # KEY=VALUE, over the image's labels
    stop_signal: str | None = None
    #: runtime.Security fields: cap_add, cap_drop, privileged, read_only.
    security: dict = field(default_factory=dict)
    #: OCI runtime-spec mounts from -v/--mount/--tmpfs (cli.mounts).
    mounts: tuple[dict, ...] = ()
