"""``layerbox cp [-a] [-L] [-q] CONTAINER:SRC DEST|-`` and ``SRC|- CONTAINER:DEST``, as
``docker cp``: copy files or directories between a container and the host."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    add_arguments(subparsers.add_parser(
        "cp", help="Copy files/folders between a container and the local filesystem",
        description="Copy files/folders between a container and the local filesystem. "
                    "Use '-' as the source to read a tar archive from stdin and extract it "
                    "to a directory destination in a container; use '-' as the destination "
                    "to stream a tar archive of a container source to stdout."))


def add_arguments(p) -> None:
    p.add_argument("-a", "--archive", action="store_true",
                   help="archive mode (copy all uid/gid information)")
    p.add_argument("-L", "--follow-link", action="store_true",
                   help="always follow symbol link in SRC_PATH")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="suppress progress output during copy")
    p.add_argument("source", metavar="SRC")
    p.add_argument("destination", metavar="DEST")
    p.set_defaults(func=cp)


def cp(args) -> int:
    from cli.copy import copy, parse_endpoint
    from cli.errors import UserError
    from cli.format import human_size
    from cli.store.store import Store

    src, dst = parse_endpoint(args.source), parse_endpoint(args.destination)
    if dst.container is None and dst.path == "-" and sys.stdout.isatty():
        raise UserError("cowardly refusing to write a tar archive to a terminal")
    with Store.open(args.root) as store:
        copied = copy(store, src, dst, follow_link=args.follow_link, archive=args.archive,
                      stdin=sys.stdin.buffer, stdout=sys.stdout.buffer)
    sys.stdout.flush()
    if not args.quiet and sys.stderr.isatty() and "-" not in (src.path, dst.path):
        where = f"{dst.container}:{dst.path}" if dst.container else dst.path
        print(f"Successfully copied {human_size(copied)} to {where}", file=sys.stderr)
    return 0
