"""``layerbox export [-o FILE] CONTAINER``: the container's filesystem as a tar, as
``docker export`` writes it (``layerbox import`` reads it back)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="Export a container's filesystem as a tar archive",
                              description="Export a container's filesystem as a tar archive")
    add_arguments(p)


def add_arguments(p) -> None:
    p.add_argument("-o", "--output", default=None, help="write to a file, instead of STDOUT")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=export)


def export(args) -> int:
    from cli import containers
    from cli.export import export_container
    from cli.output import refuse_terminal, write_archive
    from cli.store.store import Store

    refuse_terminal(args.output)
    with Store.open(args.root) as store:
        container = containers.lookup(store, args.container)
        write_archive(args.output, lambda out: export_container(store, container, out),
                      "failed to export container")
    return 0
