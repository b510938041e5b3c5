"""``layerbox login [-u USER] [-p PASS | --password-stdin] [SERVER]``: docker login."""

from __future__ import annotations

import sys

from cli.commands.pull import add_registry_options


def add_arguments(p) -> None:
    p.add_argument("server", nargs="?", default=None, metavar="SERVER")
    p.add_argument("-u", "--username", default=None)
    p.add_argument("-p", "--password", default=None)
    p.add_argument("--password-stdin", action="store_true", help="take the password from stdin")
    add_registry_options(p)
    p.set_defaults(func=run)


def register(subparsers) -> None:
    add_arguments(subparsers.add_parser(
        "login", help="Log in to a registry",
        description="Log in to a registry. If no server is specified, docker.io is used."))


def server_host(server: str | None) -> str:
    """``https://host:5000/v2/`` → ``host:5000``; none → Docker Hub (``docker.io``)."""
    from cli.reference import DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN

    if not server:
        return DEFAULT_DOMAIN
    host = server.split("://", 1)[-1].split("/", 1)[0]
    return DEFAULT_DOMAIN if host in (LEGACY_DEFAULT_DOMAIN, "registry-1.docker.io") else host


def _read_credentials(args):
    import getpass

    from cli.errors import UserError
    from cli.registry.auth import Credentials

    if args.password_stdin:
        if args.password is not None:
            raise UserError("--password and --password-stdin are mutually exclusive")
        if args.username is None:
            raise UserError("Must provide --username with --password-stdin")
        args.password = sys.stdin.read().rstrip("\r\n")
    elif args.password is not None:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
              file=sys.stderr)
    username = args.username
    if username is None:
        if not sys.stdin.isatty():
            raise UserError("Cannot perform an interactive login from a non TTY device")
        username = input("Username: ").strip()
    password = args.password
    if password is None:
        if not sys.stdin.isatty():
            raise UserError("Cannot perform an interactive login from a non TTY device")
        password = getpass.getpass("Password: ")
    if not username:
        raise UserError("Username is required")
    if not password:
        raise UserError("Password is required")
    return Credentials(username, password)


def run(args) -> int:
    from cli.registry import auth
    from cli.registry.client import RegistryClient

    host = server_host(args.server)
    credentials = _read_credentials(args)
    # Docker Hub's /v2/ lives at registry-1.docker.io.
    endpoint = "registry-1.docker.io" if host == "docker.io" else host
    RegistryClient(endpoint, "", credentials=credentials, tls_verify=args.tls_verify).ping()
    auth.store(host, credentials, args.authfile)
    print("Login Succeeded")
    return 0
