"""``layerbox logout [SERVER]``: docker logout."""

from __future__ import annotations

from cli.commands.login import server_host


def add_arguments(p) -> None:
    p.add_argument("server", nargs="?", default=None, metavar="SERVER")
    p.add_argument("--authfile", default=None, help="credentials file")
    p.set_defaults(func=run)


def register(subparsers) -> None:
    add_arguments(subparsers.add_parser(
        "logout", help="Log out from a registry",
        description="Log out from a registry. If no server is specified, docker.io is used."))


def run(args) -> int:
    from cli.registry import auth

    host = server_host(args.server)
    if auth.remove(host, args.authfile):
        print(f"Removing login credentials for {auth.registry_key(host)}")
    else:
        print(f"Not logged in to {auth.registry_key(host)}")
    return 0
