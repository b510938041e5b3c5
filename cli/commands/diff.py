"""``layerbox diff [--format json] CONTAINER``: A/C/D changes, as ``docker diff`` prints them."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("diff", help="Inspect changes to files or directories on a "
                                           "container's filesystem")
    add_arguments(p)


def add_arguments(p) -> None:
    p.add_argument("--format", default=None, help="json for {changed, added, deleted}")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=diff)


def container_changes(store, container):
    from cli import containers
    from overlayfs.changes import changes
    merged = container.dir / "merged"
    if container.status() in ("running", "paused") and containers.is_mounted(merged):
        containers.syncfs(merged)     # the mount may still cache writes; make upper/ current
    return changes(container.lower_dirs(store), container.dir / "upper")


def diff(args) -> int:
    from cli import containers
    from cli.errors import UserError
    from cli.store.store import Store
    with Store.open(args.root) as store:
        container = containers.lookup(store, args.container)
        found = container_changes(store, container)
    if args.format == "json":
        from overlayfs.changes import group_changes
        print(json.dumps(group_changes(found)))
        return 0
    if args.format:
        raise UserError(f"unsupported --format {args.format!r} (json)")
    if found:
        import sys
        sys.stdout.write("".join(f"{change}\n" for change in found))
    return 0
