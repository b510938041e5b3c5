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


#: docker run/create --pull: when to fetch the image before creating the container.
PULL_POLICIES = ("missing", "always", "never")


def ensure_image(store, name: str, policy: str, args, out, *, say_missing: bool = True) -> None:
    """Pull NAME first, as ``docker run``/``create``/``build`` do, when POLICY asks:
    ``missing`` (the default) only when the store cannot resolve NAME, ``always``
    every time, ``never`` not at all. Progress goes to OUT (stderr for run, so the
    container's stdout stays its own). The classic builder's FROM does not say
    "Unable to find image" (SAY_MISSING false), it shows the pull alone."""
    from cli.reference import try_parse
    from cli.store.errors import NoSuchImage
    ref = try_parse(name)
    if policy == "never" or ref is None:   # None: an image id, nothing to pull
        return
    if ref.digest is None:
        ref = ref.with_default_tag()
    if policy == "missing":
        try:
            store.resolve_image_id(name)
            return
        except NoSuchImage:
            pass
        if say_missing:
            out.write(f"Unable to find image '{ref.familiar}' locally\n")
            out.flush()
    from cli.registry.progress import Progress
    from cli.registry.pull import pull
    pull(store, str(ref), client_factory(args, "pull"), Progress(out, tty=out.isatty()))


def add_pull_policy(p) -> None:
    p.add_argument("--pull", choices=PULL_POLICIES, default="missing",
                   help='pull the image before running ("missing", "always", "never")')


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
