"""``layerbox port CONTAINER [PRIVATE_PORT[/PROTO]]``, as ``docker port``."""

from __future__ import annotations


def register(subparsers) -> None:
    add_arguments(subparsers.add_parser(
        "port", help="List port mappings or a specific mapping for the container",
        description="List port mappings or a specific mapping for the container"))


def add_arguments(p) -> None:
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("private_port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
    p.set_defaults(func=port)


def port(args) -> int:
    from cli import containers
    from cli.errors import UserError
    from cli.store.store import Store
    with Store.open(args.root) as store:
        container = containers.lookup(store, args.container)
    mappings = container.record.get("ports") or []
    if args.private_port:
        number, _, proto = args.private_port.partition("/")
        mappings = [m for m in mappings if str(m["container_port"]) == number
                    and m["proto"] == (proto or "tcp")]
        if not mappings:
            raise UserError(f"No public port '{number}/{proto or 'tcp'}' published for "
                            f"{args.container}")
        for m in mappings:
            print(f"{m['host_ip']}:{m['host_port']}")
        return 0
    for m in mappings:
        print(f"{m['container_port']}/{m['proto']} -> {m['host_ip']}:{m['host_port']}")
    return 0
