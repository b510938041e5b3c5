"""``layerbox start [-a] [-i] CONTAINER…``."""

from __future__ import annotations

import sys

from cli.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("start", help="Start one or more stopped containers")
    p.add_argument("-a", "--attach", action="store_true", help="attach STDOUT/STDERR")
    p.add_argument("-i", "--interactive", action="store_true", help="attach STDIN")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=start)


def start(args) -> int:
    from cli import containers
    from cli.commands.run import start_attached
    from cli.store.store import Store
    if (args.attach or args.interactive) and len(args.containers) > 1:
        raise UserError("you cannot start and attach multiple containers at once")
    failed = False
    with Store.open(args.root) as store:
        targets = []
        for name in args.containers:
            try:
                targets.append((name, containers.lookup(store, name)))
            except UserError as exc:
                print(f"Error: {exc}", file=sys.stderr)
                failed = True
        if args.attach or args.interactive:
            if not targets:
                return 1
            name, container = targets[0]
            if container.status() in ("running", "paused"):
                raise UserError(f"container {name} is already running")
        else:
            for name, container in targets:
                try:
                    if container.status() not in ("running", "paused"):
                        containers.start(store, container)
                    print(name)
                except UserError as exc:
                    print(f"Error: {exc}", file=sys.stderr)
                    failed = True
            return 1 if failed else 0
    return start_attached(args.root, container, stdin=args.interactive,
                          tty=bool(container.config.get("Tty")))
