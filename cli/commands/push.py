"""``layerbox push [--tls-verify=BOOL] [--authfile FILE] NAME[:TAG]``: docker push."""

from __future__ import annotations

from cli.commands.pull import add_registry_options, client_factory, progress_for


def add_arguments(p) -> None:
    p.add_argument("name", metavar="NAME[:TAG]")
    add_registry_options(p)
    p.set_defaults(func=run)


def register(subparsers) -> None:
    add_arguments(subparsers.add_parser(
        "push", help="Upload an image to a registry",
        description="Upload an image to a registry"))


def run(args) -> int:
    from cli.registry.push import push
    from cli.store import open_store

    with open_store(args) as store:
        push(store, args.name, client_factory(args, "pull,push"), progress_for(args))
    return 0
