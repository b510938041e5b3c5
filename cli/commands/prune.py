"""``layerbox image prune [-a] [-f]``: remove dangling (or all unused) images."""

from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("-a", "--all", action="store_true",
                   help="remove all unused images, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="accepted, not implemented")
    p.set_defaults(func=run)


def run(args) -> int:
    from cli.format import human_size
    from cli.store import open_store
    from cli.store.removal import prune_images

    if not args.force:
        warning = ("WARNING! This will remove all images without at least one container "
                   "associated to them." if args.all else
                   "WARNING! This will remove all dangling images.")
        sys.stdout.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return 0
    with open_store(args) as store:
        report = prune_images(store, all_images=args.all)
    if report.untagged or report.deleted:
        print("Deleted Images:")
        for name in report.untagged:
            print(f"untagged: {name}")
        for digest in report.deleted:
            print(f"deleted: {digest}")
        print()
    print(f"Total reclaimed space: {human_size(report.reclaimed)}")
    return 0
