"""``layerbox restart [-t SECS] CONTAINER…``."""

from __future__ import annotations

import sys

from cli.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("restart", help="Restart one or more containers")
    p.add_argument("-t", "--time", type=int, default=10,
                   help="seconds to wait before killing (default %(default)s)")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=restart)


def restart(args) -> int:
    from cli import containers
    from cli.store.store import Store
    failed = False
    with Store.open(args.root) as store:
        for name in args.containers:
            try:
                container = containers.lookup(store, name)
                containers.stop(store, container, timeout=args.time)
                containers.start(store, containers.reload(store, container))
                print(name)
            except UserError as exc:
                print(f"Error: {exc}", file=sys.stderr)
                failed = True
    return 1 if failed else 0
