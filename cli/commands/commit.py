"""``layerbox commit [-a AUTHOR] [-m MSG] [-c INSTR]… [-p|--pause=false] CONTAINER [REPO[:TAG]]``."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("commit", help="Create a new image from a container's changes")
    add_arguments(p)


def add_arguments(p) -> None:
    p.add_argument("-a", "--author", default="",
                   help='author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
    p.add_argument("-m", "--message", default="", help="commit message")
    p.add_argument("-c", "--change", action="append", default=[],
                   help="apply Dockerfile instruction to the created image")
    # Docker's bool flag: -p, --pause, --pause=true, --pause=false (exact strings, so that
    # "--pause" never swallows CONTAINER as its value).
    p.add_argument("-p", "--pause", "--pause=true", dest="pause", action="store_true",
                   default=True, help="pause container during commit (default true)")
    p.add_argument("--pause=false", dest="pause", action="store_false",
                   help="do not pause the container during commit")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=commit)


def commit(args) -> int:
    from cli import commit as commit_lib
    from cli import containers
    from cli.store.store import Store
    with Store.open(args.root) as store:
        container = containers.lookup(store, args.container)
        image = commit_lib.commit(store, container, author=args.author, message=args.message,
                                  changes=args.change, pause=args.pause, repo=args.repository)
    print(image.id)
    return 0
