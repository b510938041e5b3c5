"""``layerbox unpause CONTAINER…``."""

from __future__ import annotations


def register(subparsers) -> None:
    from cli.commands.pause import change
    p = subparsers.add_parser("unpause", help="Unpause all processes within one or more containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=lambda args: change(args, pause=False))
