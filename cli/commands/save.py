"""``layerbox save [-o FILE] IMAGE…``: docker save (docker-archive; ``--format oci-archive``)."""

from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--output", default=None, help="write to a file, instead of STDOUT")
    p.add_argument("--format", choices=("docker-archive", "oci-archive"), default="docker-archive",
                   help="archive format (default docker-archive, as docker save writes)")
    p.set_defaults(func=run)


def register(subparsers) -> None:
    add_arguments(subparsers.add_parser(
        "save", help="Save one or more images to a tar archive (streamed to STDOUT by default)",
        description="Save one or more images to a tar archive"))


def run(args) -> int:
    import os

    from cli.errors import UserError
    from cli.store import open_store
    from cli.store.archive import save_images

    if args.output is None and sys.stdout.isatty():
        raise UserError("cowardly refusing to save to a terminal. Use the -o flag or "
                        "redirect")
    with open_store(args) as store:
        if args.output is None:
            save_images(store, args.images, sys.stdout.buffer, fmt=args.format)
            sys.stdout.flush()
            return 0
        tmp = f"{args.output}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as out:
                save_images(store, args.images, out, fmt=args.format)
            os.replace(tmp, args.output)
        except OSError as exc:
            raise UserError(f"failed to save image: {exc}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return 0
