"""``layerbox run`` (and the flags ``create`` shares with it)."""

from __future__ import annotations

import sys

from cli.errors import UserError


def add_create_arguments(p) -> None:
    from cli.commands.pull import add_pull_policy, add_registry_options
    add_pull_policy(p)
    add_registry_options(p)
    p.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("--name", help="assign a name to the container")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V",
                   help="set environment variables")
    p.add_argument("--env-file", action="append", default=[], metavar="FILE",
                   help="read in a file of environment variables")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("-u", "--user", help="username or UID (format: <name|uid>[:<group|gid>])")
    p.add_argument("-h", "--hostname", help="container host name")
    p.add_argument("--entrypoint", help="overwrite the default ENTRYPOINT of the image")
    p.add_argument("--network", "--net", default="bridge", metavar="NETWORK",
                   help="bridge (default: own namespace with outbound access and -p), "
                        "host (the host's), none (loopback only)")
    p.add_argument("-p", "--publish", action="append", default=[],
                   metavar="[IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]",
                   help="publish a container's port to the host")
    p.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]",
                   help="bind mount a host path")
    p.add_argument("--mount", action="append", default=[], metavar="type=bind|tmpfs,…",
                   help="attach a filesystem mount to the container")
    p.add_argument("--tmpfs", action="append", default=[], metavar="PATH[:OPTIONS]",
                   help="mount a tmpfs directory")
    p.add_argument("--cap-add", action="append", default=[], metavar="CAP",
                   help="add Linux capabilities (or ALL)")
    p.add_argument("--cap-drop", action="append", default=[], metavar="CAP",
                   help="drop Linux capabilities (or ALL)")
    p.add_argument("--privileged", action="store_true",
                   help="give extended privileges to this container")
    p.add_argument("--read-only", action="store_true",
                   help="mount the container's root filesystem as read only")
    p.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE",
                   help="set metadata on a container")
    p.add_argument("--stop-signal", default=None, metavar="SIGNAL",
                   help="signal to stop the container")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", nargs="...", metavar="COMMAND")


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="Create and run a new container from an image",
                              add_help=False)
    p.add_argument("--help", action="help", help="show this help message and exit")
    p.add_argument("-d", "--detach", action="store_true",
                   help="run in the background and print the container ID")
    add_create_arguments(p)
    p.set_defaults(func=run)


def _env_items(args) -> tuple[str, ...]:
    import os
    items: list[str] = []
    for path in args.env_file:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise UserError(f"open {path}: {exc.strerror.lower()}") from None
        items += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    items += args.env
    resolved = []
    for item in items:
        if "=" not in item:        # `-e NAME` passes the client's value, as Docker does
            if item in os.environ:
                resolved.append(f"{item}={os.environ[item]}")
            continue
        if item.startswith("="):
            raise UserError(f"invalid environment variable: {item}")
        resolved.append(item)
    return tuple(resolved)


def _security(args) -> dict:
    from cli import runtime
    security = runtime.Security(cap_add=tuple(args.cap_add), cap_drop=tuple(args.cap_drop),
                                privileged=args.privileged, read_only=args.read_only)
    security.capabilities()            # an unknown capability is an error now, not at start
    return {name: getattr(security, name)
            for name in ("cap_add", "cap_drop", "privileged", "read_only")}


def create_from_args(store, args, container_id: str | None = None):
    from cli import containers, mounts, network
    from cli.commands.pull import ensure_image
    from cli.create_options import CreateOptions
    mode = network.normalize_mode(args.network)
    ports = [network.parse_publish(p) for p in args.publish]
    if ports and mode != "bridge":
        print(f"WARNING: Published ports are discarded when using {mode} network mode",
              file=sys.stderr)
        ports = []
    opts = CreateOptions(
        image=args.image, command=list(args.command), name=args.name,
        entrypoint=args.entrypoint, env=_env_items(args), workdir=args.workdir,
        user=args.user, hostname=args.hostname, tty=args.tty, open_stdin=args.interactive,
        network=mode, ports=tuple(p.as_dict() for p in ports), auto_remove=args.rm,
        labels=tuple(label if "=" in label else f"{label}=" for label in args.label),
        stop_signal=args.stop_signal, security=_security(args),
        mounts=tuple(mounts.parse_all(args.volume, args.mount, args.tmpfs)))
    ensure_image(store, args.image, args.pull, args, sys.stderr)
    return containers.create(store, opts, container_id=container_id)


def run(args) -> int:
    import os
    if args.tty and args.interactive and not args.detach and not os.isatty(0):
        raise UserError("the input device is not a TTY")
    # The mount program starts before anything else: its start-up (60-80 ms) then runs
    # while we import, open the store and make the container, instead of after.
    from pathlib import Path

    from cli import monitor_spawn, unionmount
    container_id = waiting = None
    if monitor_spawn.can_fork():
        container_id = os.urandom(32).hex()     # containers.new_container_id, unimported
        waiting = unionmount.MountProgramInWaiting.start(
            Path(os.path.abspath(args.root)) / "containers" / container_id / "merged")

    from cli import containers
    from cli.store.store import Store
    try:
        with Store.open(args.root) as store:
            container = create_from_args(store, args, container_id)
            mounting = None
            if waiting is not None:
                mounting = containers.start_mount_rootfs(container, store, waiting)
                waiting = None
            if args.detach:
                containers.start(store, container, mounting=mounting)
                print(container.id)
                return 0
            containers.start(store, container, attach_first=True, mounting=mounting)
    finally:
        if waiting is not None:      # failed before the container was made
            waiting.cancel()
    return attach_started(args.root, container, stdin=args.interactive, tty=args.tty)


def start_attached(root, container, *, stdin: bool, tty: bool) -> int:
    """Start under a monitor that waits for us, then stream until the container exits."""
    from cli import containers
    from cli.store.store import Store
    with Store.open(root) as store:
        containers.start(store, container, attach_first=True)
    return attach_started(root, container, stdin=stdin, tty=tty)


def attach_started(root, container, *, stdin: bool, tty: bool) -> int:
    """Stream a container started with ``attach_first`` until it exits (the store is
    closed by then: the client holds no connection while it only streams)."""
    from cli import attach
    sock = attach.connect(container)
    if sock is None:
        raise UserError(f"container {container.name}: its monitor is not listening")
    with _signal_proxy(root, container, enabled=not tty):
        try:
            return attach.attach(container, stdin=stdin, tty=tty, sock=sock)
        except attach.Detached:
            sys.stderr.write("\r\n")
            return 0


class _signal_proxy:
    """Without a tty, SIGINT/SIGTERM to the client go to the container (Docker's sig-proxy)."""

    def __init__(self, root, container, enabled: bool):
        self.root, self.container, self.enabled = root, container, enabled
        self.saved = {}

    def __enter__(self):
        import signal
        if self.enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self._forward)
        return self

    def _forward(self, signum, _frame):
        import os
        from pathlib import Path

        from cli import runtime
        try:
            runtime.Runc(Path(os.path.abspath(self.root)) / "runc").kill(self.container.id, str(signum))
        except UserError:
            pass

    def __exit__(self, *exc):
        import signal
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
