"""``layerbox pause CONTAINER…``: freeze every process (cgroup freezer)."""

from __future__ import annotations

import sys

from cli.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("pause", help="Pause all processes within one or more containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=lambda args: change(args, pause=True))


def change(args, *, pause: bool) -> int:
    from cli import containers
    from cli.store.store import Store
    failed = False
    with Store.open(args.root) as store:
        for name in args.containers:
            try:
                container = containers.lookup(store, name)
                containers.require_running(container)
                status = container.status()
                if pause and status == "paused":
                    raise UserError(f"Container {container.id} is already paused")
                if not pause and status != "paused":
                    raise UserError(f"Container {container.id} is not paused")
                runc = containers.runc_for(store)
                (runc.pause if pause else runc.resume)(container.id)
                containers.update_state(store, container.id,
                                        status="paused" if pause else "running")
                print(name)
            except UserError as exc:
                print(f"Error: {exc}", file=sys.stderr)
                failed = True
    return 1 if failed else 0
