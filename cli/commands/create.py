"""``layerbox create``: a container that is not started yet."""

from __future__ import annotations


def register(subparsers) -> None:
    from cli.commands.run import add_create_arguments
    p = subparsers.add_parser("create", help="Create a new container", add_help=False)
    p.add_argument("--help", action="help", help="show this help message and exit")
    add_create_arguments(p)
    p.set_defaults(func=create)


def create(args) -> int:
    from cli.commands.run import create_from_args
    from cli.store.store import Store
    with Store.open(args.root) as store:
        container = create_from_args(store, args)
    print(container.id)
    return 0
