"""``layerbox import FILE|- [REPOSITORY[:TAG]]``: docker import."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("import", help="Import a tarball as a filesystem image",
                              description="Import the contents from a tarball to create a "
                                          "filesystem image")
    p.add_argument("file", metavar="file|-", help="tar file (plain, gzip, zstd, bzip2, xz) or -")
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("-c", "--change", action="append", default=[],
                   help="apply a Dockerfile instruction to the image (CMD, ENV, …)")
    p.add_argument("-m", "--message", default="", help="commit message for the image")
    p.add_argument("--platform", default=None, help="ignored; the host platform is used")
    p.add_argument("--compression", choices=("gzip", "zstd"), default="gzip",
                   help="layer compression (default gzip)")
    p.set_defaults(func=run)


def run(args) -> int:
    from cli.errors import UserError
    from cli.store import open_store
    from cli.store.imports import import_tarball

    if args.file == "-":
        stream, close = sys.stdin.buffer, False
    else:
        try:
            stream, close = open(args.file, "rb"), True
        except OSError as exc:
            raise UserError(f"open {args.file}: {exc.strerror.lower()}") from None
    try:
        with open_store(args) as store:
            image = import_tarball(store, stream, ref=args.repository, changes=args.change,
                                   message=args.message, compression=args.compression)
    finally:
        if close:
            stream.close()
    print(image.id)
    return 0
