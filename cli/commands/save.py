"""``layerbox save [-o FILE] IMAGE…``: docker save (docker-archive; ``--format oci-archive``)."""

from __future__ import annotations


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
    from cli.output import refuse_terminal, write_archive
    from cli.store import open_store
    from cli.store.archive import save_images

    refuse_terminal(args.output)
    with open_store(args) as store:
        write_archive(args.output,
                      lambda out: save_images(store, args.images, out, fmt=args.format),
                      "failed to save image")
    return 0
