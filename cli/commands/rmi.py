"""``layerbox rmi [-f] IMAGE…``: docker rmi (also ``image rm``)."""

from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--force", action="store_true", help="force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="accepted for compatibility")
    p.set_defaults(func=run)


def register(subparsers) -> None:
    add_arguments(subparsers.add_parser("rmi", help="Remove one or more images",
                                        description="Remove one or more images"))


def print_removal(report) -> None:
    for name in report.untagged:
        print(f"Untagged: {name}")
    for digest in report.deleted:
        print(f"Deleted: {digest}")


def run(args) -> int:
    from cli.errors import UserError
    from cli.store import open_store
    from cli.store.removal import remove_image

    failed = 0
    with open_store(args) as store:
        for name in args.images:
            try:
                report = remove_image(store, name, force=args.force)
            except UserError as exc:
                if len(args.images) == 1:
                    raise
                print(f"Error: {exc}", file=sys.stderr)
                failed += 1
                continue
            print_removal(report)
    return 1 if failed else 0
