"""`layerbox`: argument parsing and output only; each verb lives in ``cli/commands/``.

Every command module defines ``register(subparsers)`` which adds its parser and sets
``func`` (called with the parsed args, returns an exit code or None). Modules are
imported lazily by name so that e.g. ``layerbox images`` never imports the filesystem.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from cli import logs
from cli.errors import UserError

#: Command modules under cli/commands/, in the order `layerbox --help` lists them.
COMMAND_MODULES: list[str] = [
    "images", "image", "history", "tag", "rmi", "importcmd", "save", "load", "system",
    "run", "create", "start", "attach", "exec", "ps", "logs", "stop", "kill", "restart",
    "rm", "wait", "pause", "unpause", "inspect", "diff", "commit", "export", "cp",
    "rename", "top", "port", "container",
    "volume", "push", "pull", "login", "logout", "build", "info", "version",
]

DEFAULT_ROOT = "/var/lib/layerbox"
#: Command names that differ from their module's name.
_MODULE_OF_COMMAND = {"import": "importcmd"}


def invoked_module(argv: list[str]) -> tuple[str | None, str | None]:
    """The command module ARGV invokes and the word after the command, found without
    argparse. The module is None when there is no known command (help, a typo): then the
    whole parser is built, for argparse's message.

    Building every verb's parser costs more than the rest of ``layerbox images``, so a
    command builds only its own. Options before the command are the top-level ones:
    ``--root VALUE`` takes the next word; the others are flags or ``--opt=value``.
    Groups (``image``, ``container``) likewise build only the subcommand named by the
    word after them when they know it (``subparsers.invoked_subcommand``).
    """
    words = iter(argv)
    for word in words:
        if word == "--root":
            next(words, None)
        elif word == "--":
            break
        elif not word.startswith("-"):
            module = _MODULE_OF_COMMAND.get(word, word)
            if module not in COMMAND_MODULES:
                break
            return module, next(words, None)
    return None, None


def build_parser(only: str | None = None, subcommand: str | None = None
                 ) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerbox",
        description="Run, diff and commit containers on a FUSE union filesystem.")
    parser.add_argument("--root", default=os.environ.get("LAYERBOX_ROOT", DEFAULT_ROOT),
                        help="store root (default: $LAYERBOX_ROOT or %(default)s)")
    parser.add_argument("-D", "--debug", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.invoked_subcommand = subcommand if only else None
    for name in [only] if only else COMMAND_MODULES:
        importlib.import_module(f"cli.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(*invoked_module(argv))
    args = parser.parse_args(argv)
    logs.configure(args.debug)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 1
    try:
        code = args.func(args)
    except UserError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return 0 if code is None else int(code)


if __name__ == "__main__":
    sys.exit(main())
