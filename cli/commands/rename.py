"""``layerbox rename CONTAINER NEW_NAME``, as ``docker rename``."""

from __future__ import annotations


def register(subparsers) -> None:
    add_arguments(subparsers.add_parser("rename", help="Rename a container",
                                        description="Rename a container"))


def add_arguments(p) -> None:
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("new_name", metavar="NEW_NAME")
    p.set_defaults(func=rename)


def rename(args) -> int:
    from cli import containers
    from cli.store.store import Store
    with Store.open(args.root) as store:
        containers.rename(store, containers.lookup(store, args.container), args.new_name)
    return 0
