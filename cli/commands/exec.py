"""``layerbox exec [-i] [-t] [-e K=V] [-w DIR] [-u USER] CONTAINER CMD…`` (runc exec)."""

from __future__ import annotations

import os
import subprocess
import sys

from cli.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("exec", help="Execute a command in a running container")
    p.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("-u", "--user", help="username or UID (format: <name|uid>[:<group|gid>])")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("command", nargs="...", metavar="COMMAND")
    p.set_defaults(func=exec_command)


def exec_command(args) -> int:
    from cli import containers, runtime
    from cli.store.store import Store
    if not args.command:
        raise UserError("exec needs a command to run")
    with Store.open(args.root) as store:
        container = containers.lookup(store, args.container)
        containers.require_running(container)
        if container.status() == "paused":
            raise UserError(f"Container {container.id} is paused, unpause the container "
                            "before exec")
        runc = containers.runc_for(store)
        flags = []
        if args.tty:
            if not os.isatty(sys.stdin.fileno()):
                raise UserError("the input device is not a TTY")
            flags.append("--tty")
        if args.detach:
            flags.append("--detach")
        for item in args.env:
            flags += ["--env", item]
        if args.workdir:
            flags += ["--cwd", args.workdir]
        if args.user:
            user = runtime.resolve_user(container.dir / "merged", args.user)
            flags += ["--user", f"{user.uid}:{user.gid}"]
        cmd = runc.command("exec", *flags, container.id, *args.command)
    stdin = None if args.interactive or args.tty else subprocess.DEVNULL
    # runc passes our stdio to the process (and with --tty copies our terminal itself).
    return subprocess.run(cmd, stdin=stdin).returncode
