"""``layerbox volume create|ls|inspect|rm|prune``, as ``docker volume``."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("volume", help="Manage volumes", description="Manage volumes")
    group = p.add_subparsers(dest="volume_command", metavar="COMMAND")
    create = group.add_parser("create", help="Create a volume")
    create.add_argument("name", nargs="?", metavar="VOLUME")
    create.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    create.set_defaults(func=create_volume)
    ls = group.add_parser("ls", aliases=["list"], help="List volumes")
    ls.add_argument("-q", "--quiet", action="store_true", help="only display volume names")
    ls.add_argument("--format", default=None, help="json or a Go template")
    ls.set_defaults(func=list_volumes)
    inspect = group.add_parser("inspect", help="Display detailed information on one or more "
                                                "volumes")
    inspect.add_argument("names", nargs="+", metavar="VOLUME")
    inspect.add_argument("-f", "--format", default=None, help="format output using a Go template")
    inspect.set_defaults(func=inspect_volumes)
    rm = group.add_parser("rm", aliases=["remove"], help="Remove one or more volumes")
    rm.add_argument("-f", "--force", action="store_true",
                    help="force the removal of one or more volumes")
    rm.add_argument("names", nargs="+", metavar="VOLUME")
    rm.set_defaults(func=remove_volumes)
    prune = group.add_parser("prune", help="Remove unused local volumes")
    prune.add_argument("-a", "--all", action="store_true",
                       help="remove all unused volumes, not just anonymous ones")
    prune.add_argument("-f", "--force", action="store_true", help="do not prompt")
    prune.set_defaults(func=prune_volumes)
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])


def create_volume(args) -> int:
    from cli import volumes
    from cli.store.store import Store
    with Store.open(args.root) as store:
        volume = volumes.create(store, args.name,
                                dict(label.partition("=")[::2] for label in args.label))
    print(volume["Name"])
    return 0


def list_volumes(args) -> int:
    from cli import volumes
    from cli.format import print_formatted, print_table
    from cli.store.store import Store
    with Store.open(args.root) as store:
        found = volumes.list_volumes(store)
    if args.quiet:
        for volume in found:
            print(volume["Name"])
    elif args.format:
        print_formatted(args.format, found)
    else:
        print_table(["DRIVER", "VOLUME NAME"], [[v["Driver"], v["Name"]] for v in found])
    return 0


def inspect_volumes(args) -> int:
    from cli import volumes
    from cli.errors import UserError
    from cli.format import print_documents
    from cli.store.store import Store
    docs, failed = [], False
    with Store.open(args.root) as store:
        for name in args.names:
            try:
                doc = volumes.inspect(store, name)
            except UserError as exc:
                print(f"Error: {exc}", file=sys.stderr)
                failed = True
                continue
            doc.pop("Anonymous")
            docs.append(doc)
    print_documents(docs, args.format)
    return 1 if failed else 0


def remove_volumes(args) -> int:
    from cli import volumes
    from cli.errors import UserError
    from cli.store.store import Store
    failed = False
    with Store.open(args.root) as store:
        for name in args.names:
            try:
                volumes.remove(store, name, force=args.force)
                print(name)
            except UserError as exc:
                print(f"Error: {exc}", file=sys.stderr)
                failed = True
    return 1 if failed else 0


def prune_volumes(args) -> int:
    from cli import volumes
    from cli.format import human_size
    from cli.store.store import Store
    with Store.open(args.root) as store:
        removed = volumes.prune(store, all_volumes=args.all)
    if removed:
        print("Deleted Volumes:")
        for name, _ in removed:
            print(name)
        print()
    print(f"Total reclaimed space: {human_size(sum(size for _, size in removed))}")
    return 0
