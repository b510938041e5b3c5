"""``layerbox kill [-s SIG] CONTAINER…``."""

from __future__ import annotations

import sys

from cli.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("kill", help="Kill one or more running containers")
    p.add_argument("-s", "--signal", default="KILL", help="signal to send (default %(default)s)")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=kill)


def signal_name(text: str) -> str:
    import signal
    name = text.upper().removeprefix("SIG")
    if name.isdigit():
        return name
    if not hasattr(signal, "SIG" + name):
        raise UserError(f"invalid signal: {text}")
    return name


def kill(args) -> int:
    from cli import containers
    from cli.store.store import Store
    sig = signal_name(args.signal)
    failed = False
    with Store.open(args.root) as store:
        for name in args.containers:
            try:
                container = containers.lookup(store, name)
                containers.require_running(container)
                containers.runc_for(store).kill(container.id, sig)
                print(name)
            except UserError as exc:
                print(f"Error: {exc}", file=sys.stderr)
                failed = True
    return 1 if failed else 0
