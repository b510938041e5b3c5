"""``layerbox rm [-f] [-v] CONTAINER…``."""

from __future__ import annotations

import sys

from cli.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("rm", help="Remove one or more containers")
    p.add_argument("-f", "--force", action="store_true",
                   help="force the removal of a running container (uses SIGKILL)")
    p.add_argument("-v", "--volumes", action="store_true",
                   help="remove anonymous volumes associated with the container")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=rm)


def rm(args) -> int:
    from cli import containers
    from cli.store.store import Store
    failed = False
    with Store.open(args.root) as store:
        for name in args.containers:
            try:
                containers.remove(store, containers.lookup(store, name), force=args.force,
                                  volumes=args.volumes)
                print(name)
            except UserError as exc:
                print(f"Error: {exc}", file=sys.stderr)
                failed = True
    return 1 if failed else 0
