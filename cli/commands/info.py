"""``layerbox info``: system-wide information, in ``docker info``'s shape."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="Display system-wide information",
                              description="Display system-wide information")
    p.add_argument("-f", "--format", default=None, help="format output using a Go template")
    p.set_defaults(func=info)


def system_info(store) -> dict:
    import os
    import platform

    from cli import containers
    from cli.commands.version import versions
    statuses = [c.status() for c in containers.list_containers(store)]
    images = store.conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    with open("/proc/meminfo") as f:
        mem_kib = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    v = versions()
    return {"Containers": len(statuses),
            "ContainersRunning": statuses.count("running"),
            "ContainersPaused": statuses.count("paused"),
            "ContainersStopped": len(statuses) - statuses.count("running")
            - statuses.count("paused"),
            "Images": images, "Driver": "layerbox-overlayfs",
            "DriverStatus": [["Backing Filesystem", _fs_type(store.root)]],
            "DefaultRuntime": "runc", "RuncVersion": v["Runc"],
            "KernelVersion": platform.release(), "OperatingSystem": _os_name(),
            "OSType": "linux", "Architecture": platform.machine(),
            "NCPU": os.cpu_count(), "MemTotal": mem_kib * 1024,
            "LayerboxRootDir": str(store.root), "ServerVersion": v["Version"]}


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        return fields.get("PRETTY_NAME", "Linux").strip('"')
    except OSError:
        return "Linux"


def _fs_type(path) -> str:
    best, fstype = "", "unknown"
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and str(path).startswith(fields[1].rstrip("/") + "/") \
                    and len(fields[1]) > len(best):
                best, fstype = fields[1], fields[2]
    return fstype


def info(args) -> int:
    from cli.format import human_size
    from cli.store.store import Store
    with Store.open(args.root) as store:
        data = system_info(store)
    if args.format:
        from cli.format import render_template
        print(render_template(args.format, data))
        return 0
    print(f"""Server:
 Containers: {data['Containers']}
  Running: {data['ContainersRunning']}
  Paused: {data['ContainersPaused']}
  Stopped: {data['ContainersStopped']}
 Images: {data['Images']}
 Server Version: layerbox {data['ServerVersion']}
 Storage Driver: {data['Driver']}
  Backing Filesystem: {data['DriverStatus'][0][1]}
 Default Runtime: runc ({data['RuncVersion']})
 Kernel Version: {data['KernelVersion']}
 Operating System: {data['OperatingSystem']}
 OSType: {data['OSType']}
 Architecture: {data['Architecture']}
 CPUs: {data['NCPU']}
 Total Memory: {human_size(data['MemTotal'])}
 Layerbox Root Dir: {data['LayerboxRootDir']}""")
    return 0
