"""A small, deterministic busybox root filesystem tar, made from the host's static busybox.

Tests and demos import it with ``layerbox import busybox.tar busybox:latest``.
Same host busybox → same tar bytes → same diff_id, so images made from it are
reproducible. ``python -m cli.busybox OUT.tar`` writes it to a file (``-`` for stdout).
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from typing import BinaryIO

BUSYBOX = "/bin/busybox"
#: A fixed modification time for every member (reproducibility; 2023-11-14).
EPOCH = 1_700_000_000

DIRECTORIES = {
    "bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o555,
    "root": 0o700, "sbin": 0o755, "sys": 0o555, "tmp": 0o1777, "usr": 0o755,
    "usr/bin": 0o755, "usr/sbin": 0o755, "var": 0o755,
}
FILES = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n"
                  b"nobody:x:65534:65534:nobody:/home:/bin/false\n",
    "etc/group": b"root:x:0:\nnobody:x:65534:\n",
    "etc/motd": b"Welcome to layerbox busybox.\n",
}


def applet_paths(busybox: str = BUSYBOX) -> list[str]:
    """Install paths of every applet (``bin/ls``, ``usr/bin/awk``…), without busybox itself."""
    out = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True)
    names = {line.strip().lstrip("/") for line in out.stdout.splitlines() if line.strip()}
    names.discard("bin/busybox")
    return sorted(names)


def _info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_busybox_rootfs_tar(out: BinaryIO, busybox: str = BUSYBOX) -> None:
    """Write the rootfs tar to OUT: directories first, then files, in path order."""
    applets = applet_paths(busybox)
    dirs = dict(DIRECTORIES)
    for path in applets:  # e.g. "linuxrc" has no directory; "usr/libexec/x" would need one
        parent = path.rpartition("/")[0]
        while parent and parent not in dirs:
            dirs[parent] = 0o755
            parent = parent.rpartition("/")[0]
    with open(busybox, "rb") as f:
        binary = f.read()
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for path, mode in dirs.items():
        members.append((_info(path, tarfile.DIRTYPE, mode), None))
    members.append((_info("bin/busybox", tarfile.REGTYPE, 0o755, len(binary)), binary))
    for path, data in FILES.items():
        members.append((_info(path, tarfile.REGTYPE, 0o644, len(data)), data))
    for path in applets:
        link = _info(path, tarfile.SYMTYPE, 0o777)
        link.linkname = "/bin/busybox"
        members.append((link, None))
    members.sort(key=lambda m: m[0].name.split("/"))
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m cli.busybox OUT.tar|-", file=sys.stderr)
        return 2
    if args[0] == "-":
        write_busybox_rootfs_tar(sys.stdout.buffer)
    else:
        with open(args[0], "wb") as f:
            write_busybox_rootfs_tar(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
