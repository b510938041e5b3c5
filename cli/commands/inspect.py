"""``layerbox inspect [-f FORMAT] NAME…``: containers (Docker's shape), else images."""

from __future__ import annotations

import sys

from cli.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="Return low-level information on containers "
                                              "or images")
    add_arguments(p)


def add_arguments(p) -> None:
    p.add_argument("-f", "--format", default=None, help="format output using a Go template")
    p.add_argument("--type", choices=["container", "image"], default=None)
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=inspect)


def container_document(store, container) -> dict:
    from cli.mounts import docker_view
    state = container.state
    status = container.status()
    mounts = container.record.get("mounts") or []
    return {
        "Id": container.id,
        "Created": container.created,
        "Path": (container.command_args or [""])[0],
        "Args": container.command_args[1:],
        "State": {
            "Status": status,
            "Running": status in ("running", "paused"),
            "Paused": status == "paused",
            "Restarting": False,
            "OOMKilled": False,
            "Dead": status == "dead",
            "Pid": state.get("pid", 0) if status in ("running", "paused") else 0,
            "ExitCode": state.get("exit_code", 0),
            "Error": container.problem() or state.get("error", ""),
            "StartedAt": state.get("started_at", "0001-01-01T00:00:00Z"),
            "FinishedAt": state.get("finished_at", "0001-01-01T00:00:00Z"),
            "MonitorPid": state.get("monitor_pid", 0) if status in ("running", "paused") else 0,
        },
        "Image": container.image_id,
        "Name": "/" + container.name,
        "LogPath": str(container.dir / "container.log"),
        "HostnamePath": str(container.dir / "etc" / "hostname"),
        "HostsPath": str(container.dir / "etc" / "hosts"),
        "ResolvConfPath": str(container.dir / "etc" / "resolv.conf"),
        "Driver": "layerbox-overlayfs",
        "NetworkSettings": network_settings(container, status),
        "HostConfig": {"NetworkMode": container.record.get("network", "bridge"),
                       "PortBindings": _port_bindings(container.record.get("ports") or []),
                       "AutoRemove": bool(container.record.get("auto_remove")),
                       "Binds": [f"{m['source']}:{m['destination']}"
                                 + (":ro" if "ro" in m["options"] else "")
                                 for m in mounts if m["type"] == "bind"] or None},
        "Mounts": [docker_view(m) for m in mounts],
        "GraphDriver": {"Name": "layerbox-overlayfs", "Data": {
            "LowerDir": ":".join(str(p) for p in container.lower_dirs(store)),
            "UpperDir": str(container.dir / "upper"),
            "WorkDir": str(container.dir / "work"),
            "MergedDir": str(container.dir / "merged")}},
        "Config": container.config,
    }


def _port_bindings(ports: list[dict]) -> dict:
    bindings: dict[str, list] = {}
    for p in ports:
        bindings.setdefault(f"{p['container_port']}/{p['proto']}", []).append(
            {"HostIp": p["host_ip"], "HostPort": str(p["host_port"])})
    return bindings


def network_settings(container, status: str) -> dict:
    from cli import network
    bridged = container.record.get("network") == "bridge" and status in ("running", "paused")
    return {"IPAddress": network.CONTAINER_IP if bridged else "",
            "IPPrefixLen": 24 if bridged else 0,
            "Gateway": network.GATEWAY if bridged else "",
            "Ports": _port_bindings(container.record.get("ports") or []) if bridged else {}}


def inspect(args) -> int:
    from cli import containers
    from cli.format import print_documents
    from cli.store.store import Store
    docs, failed = [], False
    with Store.open(args.root) as store:
        for name in args.names:
            doc = None
            if args.type != "image":
                try:
                    doc = container_document(store, containers.lookup(store, name))
                except containers.NoSuchContainer:
                    doc = None
            if doc is None and args.type != "container":
                try:
                    from cli.store.inspect import inspect_image
                    doc = inspect_image(store, store.resolve_image(name))
                except UserError:
                    doc = None
            if doc is None:
                print(f"Error: No such object: {name}", file=sys.stderr)
                failed = True
                continue
            docs.append(doc)
    print_documents(docs, args.format)
    return 1 if failed else 0
