"""``layerbox load [-i FILE] [-q]``: docker load (docker-archive and OCI archives, or stdin)."""

from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("-i", "--input", default=None, help="read from tar archive file, "
                                                       "instead of STDIN")
    p.add_argument("-q", "--quiet", action="store_true", help="suppress the load output")
    p.set_defaults(func=run)


def register(subparsers) -> None:
    add_arguments(subparsers.add_parser(
        "load", help="Load an image from a tar archive or STDIN",
        description="Load an image from a tar archive or STDIN"))


def run(args) -> int:
    from cli.errors import UserError
    from cli.store import open_store
    from cli.store.archive import load_archive

    if args.input is None and sys.stdin.isatty():
        raise UserError("requested load from stdin, but stdin is empty")
    try:
        stream = sys.stdin.buffer if args.input is None else open(args.input, "rb")
    except OSError as exc:
        raise UserError(f"open {args.input}: {exc.strerror.lower()}") from None
    try:
        with open_store(args) as store:
            loaded = load_archive(store, stream)
    finally:
        if args.input is not None:
            stream.close()
    for line in loaded:
        print(line)
    return 0
