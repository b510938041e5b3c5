"""``layerbox ps [-a] [-q] [--no-trunc] [--format json|TEMPLATE]``."""

from __future__ import annotations

import json
from datetime import datetime, timezone


def register(subparsers) -> None:
    p = subparsers.add_parser("ps", help="List containers")
    add_arguments(p)


def add_arguments(p) -> None:
    p.add_argument("-a", "--all", action="store_true", help="show all containers")
    p.add_argument("-q", "--quiet", action="store_true", help="only display container IDs")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("--format", default=None, help="json, or a Go template")
    p.set_defaults(func=ps)


def _ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def status_text(container, now: datetime) -> str:
    from cli.format import ago, human_duration, parse_time
    status = container.status()
    state = container.state
    if status in ("running", "paused"):
        started = parse_time(state.get("started_at"))
        up = human_duration((now - started).total_seconds()) if started else "Less than a second"
        text = f"Up {up}" + (" (Paused)" if status == "paused" else "")
        return text + (" (mount died)" if container.problem() else "")
    if status == "exited":
        return f"Exited ({state.get('exit_code', 0)}) {ago(state.get('finished_at'), now)}"
    if status == "dead":
        return "Dead"
    return "Created"


def command_text(args: list[str]) -> str:
    """moby container/view.go: arguments with a space are wrapped in single quotes."""
    if not args:
        return ""
    return " ".join([args[0]] + [f"'{a}'" if " " in a else a for a in args[1:]])


def row(container, now: datetime, no_trunc: bool) -> dict:
    from cli.format import ago, docker_time
    command = command_text(container.command_args)
    return {
        "ID": container.id if no_trunc else container.short_id,
        "Image": container.record.get("image") or container.image_id,
        "Command": json.dumps(command if no_trunc else _ellipsis(command, 20),
                              ensure_ascii=False),
        "CreatedAt": docker_time(container.created),
        "RunningFor": ago(container.created, now),
        "State": container.status(),
        "Status": status_text(container, now),
        "Names": container.name,
        "Labels": ",".join(f"{k}={v}" for k, v in
                           sorted((container.config.get("Labels") or {}).items())),
        "Mounts": ",".join(m["destination"] for m in container.record.get("mounts") or []),
        "Networks": container.record.get("network", "bridge"),
        "Ports": ports_text(container.record.get("ports") or []),
    }


def ports_text(ports: list[dict]) -> str:
    """docker ps' PORTS: ``0.0.0.0:8080->80/tcp, …``."""
    return ", ".join(f"{p['host_ip']}:{p['host_port']}->{p['container_port']}/{p['proto']}"
                     for p in ports)


def ps(args) -> int:
    from cli import containers
    from cli.format import print_formatted, print_table
    from cli.store.store import Store
    now = datetime.now(timezone.utc)
    with Store.open(args.root) as store:
        items = [c for c in containers.list_containers(store)
                 if args.all or c.status() in ("running", "paused")]
    rows = [row(c, now, args.no_trunc) for c in items]
    if args.quiet:
        for r in rows:
            print(r["ID"])
        return 0
    if args.format:
        print_formatted(args.format, rows)
        return 0
    print_table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"],
                [[r["ID"], r["Image"], r["Command"], r["RunningFor"], r["Status"], r["Ports"],
                  r["Names"]] for r in rows])
    return 0
