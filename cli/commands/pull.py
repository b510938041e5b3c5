"""``layerbox pull [--tls-verify=BOOL] [--authfile FILE] NAME[:TAG|@DIGEST]``: docker pull."""

from __future__ import annotations

import sys


def parse_bool(text: str) -> bool:
    import argparse

    value = text.lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value: {text!r}")


def add_registry_options(p) -> None:
    """Options every registry command shares (Podman's spelling)."""
    p.add_argument("--tls-verify", type=parse_bool, default=None, metavar="BOOL",
                   help="require HTTPS and verify certificates (default: true, except "
                        "localhost and 127.0.0.0/8, which may use plain HTTP)")
    p.add_argument("--authfile", default=None,
                   help="credentials file (default: $REGISTRY_AUTH_FILE, "
                        "$DOCKER_CONFIG/config.json or ~/.docker/config.json)")


def client_factory(args, actions: str):
    """ref → RegistryClient for REF's registry and repository, with stored credentials."""
    from cli.registry import auth
    from cli.registry.client import RegistryClient

    def make(ref):
        # Docker Hub's API lives at registry-1.docker.io; its credentials under docker.io.
        endpoint = "registry-1.docker.io" if ref.domain == "docker.io" else ref.domain
        return RegistryClient(endpoint, ref.path,
                              credentials=auth.lookup(ref.domain, args.authfile),
                              tls_verify=args.tls_verify, actions=actions)
    return make


def progress_for(args):
    from cli.registry.progress import Progress
    return Progress(sys.stdout, tty=sys.stdout.isatty())


def add_arguments(p) -> None:
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    add_registry_options(p)
    p.set_defaults(func=run)


def register(subparsers) -> None:
    add_arguments(subparsers.add_parser(
        "pull", help="Download an image from a registry",
        description="Download an image from a registry"))


def run(args) -> int:
    from cli.registry.pull import pull
    from cli.store import open_store

    with open_store(args) as store:
        pull(store, args.name, client_factory(args, "pull"), progress_for(args))
    return 0
