"""``layerbox container COMMAND``: the container management group, as ``docker container``."""

from __future__ import annotations

import importlib

from cli.commands.group import wanted_subcommands
import sys

#: (subcommand, module under cli.commands, help)
SUBCOMMANDS = [
    ("attach", "attach", "Attach to a running container"),
    ("commit", "commit", "Create a new image from a container's changes"),
    ("cp", "cp", "Copy files/folders between a container and the local filesystem"),
    ("create", "create", "Create a new container"),
    ("diff", "diff", "Inspect changes to files or directories on a container's filesystem"),
    ("exec", "exec", "Execute a command in a running container"),
    ("export", "export", "Export a container's filesystem as a tar archive"),
    ("inspect", "inspect", "Display detailed information on one or more containers"),
    ("kill", "kill", "Kill one or more running containers"),
    ("logs", "logs", "Fetch the logs of a container"),
    ("ls", "ps", "List containers"),
    ("pause", "pause", "Pause all processes within one or more containers"),
    ("port", "port", "List port mappings or a specific mapping for the container"),
    ("prune", None, "Remove all stopped containers"),
    ("rename", "rename", "Rename a container"),
    ("restart", "restart", "Restart one or more containers"),
    ("rm", "rm", "Remove one or more containers"),
    ("run", "run", "Create and run a new container from an image"),
    ("start", "start", "Start one or more stopped containers"),
    ("stop", "stop", "Stop one or more running containers"),
    ("top", "top", "Display the running processes of a container"),
    ("unpause", "unpause", "Unpause all processes within one or more containers"),
    ("wait", "wait", "Block until one or more containers stop"),
]
ALIASES = {"ls": ["list", "ps"], "rm": ["remove"]}


class _Named:
    """Lets a command module's register() add its parser under another name."""

    def __init__(self, group, name: str, help_text: str):
        self.group, self.name, self.help_text = group, name, help_text

    def add_parser(self, _name, **kwargs):
        kwargs["help"] = self.help_text
        return self.group.add_parser(self.name, aliases=ALIASES.get(self.name, []), **kwargs)


def register(subparsers) -> None:
    p = subparsers.add_parser("container", help="Manage containers",
                              description="Manage containers")
    group = p.add_subparsers(dest="container_command", metavar="COMMAND")
    for name, module, help_text in wanted_subcommands(subparsers, SUBCOMMANDS, ALIASES):
        if module is None:
            sub = group.add_parser(name, help=help_text, description=help_text)
            sub.add_argument("-f", "--force", action="store_true",
                             help="do not prompt for confirmation")
            sub.set_defaults(func=prune)
            continue
        importlib.import_module(f"cli.commands.{module}").register(_Named(group, name, help_text))
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])


def prune(args) -> int:
    from cli import containers
    from cli.errors import UserError
    from cli.store.store import Store
    removed = []
    with Store.open(args.root) as store:
        for container in containers.list_containers(store):
            if container.status() in ("exited", "created"):
                try:
                    containers.remove(store, container)
                    removed.append(container.id)
                except UserError as exc:
                    print(f"Error: {exc}", file=sys.stderr)
    if removed:
        print("Deleted Containers:")
        for cid in removed:
            print(cid)
        print()
    print("Total reclaimed space: 0B")
    return 0
