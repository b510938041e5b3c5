"""``layerbox export [-o FILE] CONTAINER``: the container's filesystem as a tar, as
``docker export`` writes it (``layerbox import`` reads it back)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="Export a container's filesystem as a tar archive",
                              description="Export a container's filesystem as a tar archive")
    add_arguments(p)


def add_arguments(p) -> None:
    p.add_argument("-o", "--output", default=None, help="write to a file, instead of STDOUT")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=export)


def export(args) -> int:
    import os

    from cli import containers
    from cli.errors import UserError
    from cli.export import export_container
    from cli.store.store import Store

    if args.output is None and sys.stdout.isatty():
        raise UserError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    with Store.open(args.root) as store:
        container = containers.lookup(store, args.container)
        if args.output is None:
            export_container(store, container, sys.stdout.buffer)
            sys.stdout.flush()
            return 0
        tmp = f"{args.output}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as out:
                export_container(store, container, out)
            os.replace(tmp, args.output)
        except OSError as exc:
            raise UserError(f"failed to export container: {exc.strerror or exc}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return 0
