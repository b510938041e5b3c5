"""``layerbox wait CONTAINER…``: block until they stop, print their exit codes."""

from __future__ import annotations

import sys

from cli.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("wait", help="Block until containers stop, then print their exit codes")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=wait)


def wait(args) -> int:
    from cli import attach, containers
    from cli.store.store import Store
    failed = False
    for name in args.containers:
        try:
            with Store.open(args.root) as store:
                container = containers.lookup(store, name)
            if container.status() == "dead":
                raise UserError(f"container {name}: its monitor died; remove it with rm -f")
            code = attach.wait_exit(container)
            print(code if code is not None else -1)
        except UserError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            failed = True
    return 1 if failed else 0
