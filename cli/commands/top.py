"""``layerbox top CONTAINER [ps OPTIONS]``, as ``docker top``: the container's processes
as the host's ``ps`` shows them (default ``ps -ef``)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    add_arguments(subparsers.add_parser("top", help="Display the running processes of a "
                                                    "container",
                                        description="Display the running processes of a "
                                                    "container"))


def add_arguments(p) -> None:
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="[ps OPTIONS]")
    p.set_defaults(func=top)


def top(args) -> int:
    from cli import containers
    from cli.store.store import Store
    with Store.open(args.root) as store:
        header, rows = containers.processes(store, containers.lookup(store, args.container),
                                            args.ps_args)
    print("\n".join(header + rows))
    return 0
