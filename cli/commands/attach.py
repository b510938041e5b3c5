"""``layerbox attach CONTAINER``: back to a running container's terminal or output."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("attach", help="Attach to a running container")
    p.add_argument("--no-stdin", action="store_true", help="do not attach STDIN")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=attach_command)


def attach_command(args) -> int:
    from cli import attach, containers
    from cli.store.store import Store
    with Store.open(args.root) as store:
        container = containers.lookup(store, args.container)
        containers.require_running(container)
        if container.status() == "paused":
            from cli.errors import UserError
            raise UserError("You cannot attach to a paused container, unpause it first")
    stdin = bool(container.config.get("OpenStdin")) and not args.no_stdin
    try:
        return attach.attach(container, stdin=stdin, tty=bool(container.config.get("Tty")))
    except attach.Detached:
        sys.stderr.write("\r\n")
        return 0
