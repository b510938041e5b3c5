"""``layerbox logs [-f] CONTAINER``: the container's output, from its JSON-lines log."""

from __future__ import annotations

import json
import sys
import time

POLL_INTERVAL = 0.1


def register(subparsers) -> None:
    p = subparsers.add_parser("logs", help="Fetch the logs of a container")
    p.add_argument("-f", "--follow", action="store_true", help="follow log output")
    p.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=logs)


def _emit(line: bytes, timestamps: bool) -> None:
    try:
        entry = json.loads(line)
    except ValueError:
        return
    data = entry.get("log", "")
    if timestamps:
        data = f"{entry.get('time', '')} {data}"
    out = sys.stderr if entry.get("stream") == "stderr" else sys.stdout
    out.buffer.write(data.encode("utf-8", "replace"))
    out.flush()


def logs(args) -> int:
    from cli import containers
    from cli.store.store import Store
    with Store.open(args.root) as store:
        container = containers.lookup(store, args.container)
        path = container.dir / "container.log"
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return 0
        with f:
            pending = b""
            while True:
                chunk = f.read(65536)
                if chunk:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        _emit(line, args.timestamps)
                    continue
                if not args.follow:
                    return 0
                # Follow until the monitor has recorded the exit, then read what is left.
                if containers.reload(store, container).status() not in ("running", "paused",
                                                                       "created"):
                    rest = f.read()
                    for line in (pending + rest).split(b"\n"):
                        if line:
                            _emit(line, args.timestamps)
                    return 0
                time.sleep(POLL_INTERVAL)
