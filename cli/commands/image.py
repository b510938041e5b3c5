"""``layerbox image COMMAND``: the image management group, as ``docker image``."""

from __future__ import annotations

import importlib

from cli.commands.group import wanted_subcommands

#: (subcommand, module under cli.commands, help)
SUBCOMMANDS = [
    ("build", "build", "Build an image from a Dockerfile"),
    ("history", "history", "Show the history of an image"),
    ("import", "importcmd", "Import the contents from a tarball to create a filesystem image"),
    ("inspect", "image", "Display detailed information on one or more images"),
    ("load", "load", "Load an image from a tar archive or STDIN"),
    ("ls", "images", "List images"),
    ("prune", "prune", "Remove unused images"),
    ("pull", "pull", "Download an image from a registry"),
    ("push", "push", "Upload an image to a registry"),
    ("rm", "rmi", "Remove one or more images"),
    ("save", "save", "Save one or more images to a tar archive"),
    ("tag", "tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
]
ALIASES = {"ls": ["list"], "rm": ["remove"]}


def register(subparsers) -> None:
    p = subparsers.add_parser("image", help="Manage images", description="Manage images")
    group = p.add_subparsers(dest="image_command", metavar="COMMAND")
    for name, module, help_text in wanted_subcommands(subparsers, SUBCOMMANDS, ALIASES):
        sub = group.add_parser(name, help=help_text, description=help_text,
                               aliases=ALIASES.get(name, []))
        if module == "image":
            add_inspect_arguments(sub)
        elif module in ("importcmd", "build"):
            _arguments_via_register(module, sub)
        else:
            importlib.import_module(f"cli.commands.{module}").add_arguments(sub)
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])


def _arguments_via_register(module: str, sub) -> None:
    # These modules define their parser inline; build it through a tiny shim subparsers object.
    class _One:
        def add_parser(self, *a, **kw):
            return sub
    importlib.import_module(f"cli.commands.{module}").register(_One())


def add_inspect_arguments(p) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--format", default=None, help="format output using a Go template")
    p.set_defaults(func=run_inspect)


def run_inspect(args) -> int:
    import sys

    from cli.errors import UserError
    from cli.format import print_documents
    from cli.store import open_store
    from cli.store.inspect import inspect_image

    results, missing = [], []
    with open_store(args) as store:
        for name in args.images:
            try:
                results.append(inspect_image(store, store.resolve_image(name)))
            except UserError as exc:
                missing.append(str(exc))
    print_documents(results, args.format)
    for message in missing:
        print(f"Error: {message}", file=sys.stderr)
    return 1 if missing else 0
