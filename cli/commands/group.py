"""What command groups (``image``, ``container``) share."""

from __future__ import annotations


def wanted_subcommands(subparsers, subcommands: list[tuple], aliases: dict[str, list[str]]
                       ) -> list[tuple]:
    """The SUBCOMMANDS entries a group registers: only the invoked one when main knows it
    (``subparsers.invoked_subcommand``; parsers and their imports cost start-up time),
    else all of them (help, a typo: argparse lists every choice)."""
    invoked = getattr(subparsers, "invoked_subcommand", None)
    chosen = [entry for entry in subcommands
              if invoked in (entry[0], *aliases.get(entry[0], []))]
    return chosen or subcommands
