"""``layerbox version``: our version and the parts we run on (Python, runc, FUSE)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("version", help="Show the layerbox version information",
                              description="Show the layerbox version information")
    p.add_argument("-f", "--format", default=None, help="format output using a Go template")
    p.set_defaults(func=version)


def _package_version() -> str:
    from importlib import metadata
    try:
        return metadata.version("layerbox")
    except metadata.PackageNotFoundError:
        return "unknown"


def _first_line(cmd: list[str]) -> str:
    import subprocess
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def versions() -> dict:
    import platform
    import sys
    return {"Version": _package_version(),
            "PythonVersion": platform.python_version(),
            "Os": sys.platform, "Arch": platform.machine(),
            "KernelVersion": platform.release(),
            "Runc": _first_line(["runc", "--version"]),
            "Fuse": _first_line(["fusermount3", "--version"])}


def version(args) -> int:
    info = versions()
    if args.format:
        from cli.format import render_template
        print(render_template(args.format, info))
        return 0
    width = max(len(k) for k in ("Version", "Python version", "OS/Arch", "Kernel", "runc",
                                 "FUSE"))
    for label, value in (("Version", info["Version"]), ("Python version", info["PythonVersion"]),
                         ("OS/Arch", f"{info['Os']}/{info['Arch']}"),
                         ("Kernel", info["KernelVersion"]), ("runc", info["Runc"]),
                         ("FUSE", info["Fuse"])):
        print(f" {label + ':':<{width + 1}}  {value}")
    return 0
