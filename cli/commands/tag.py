"""``layerbox tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]``: docker tag."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    p.set_defaults(func=run)


def register(subparsers) -> None:
    add_arguments(subparsers.add_parser(
        "tag", help="Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
        description="Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"))


def run(args) -> int:
    from cli.reference import parse_tagged
    from cli.store import open_store

    parse_tagged(args.target)
    with open_store(args) as store:
        store.tag(store.resolve_image(args.source), args.target)
    return 0
