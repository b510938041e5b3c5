"""Helpers for layer tests: describe a directory tree in full, build hostile tars."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile

from overlayfs import whiteout as wh


def describe(root: str) -> dict[str, tuple]:
    """Everything a layer must preserve, per relative path (hard links by group)."""
    result: dict[str, tuple] = {}
    first_name: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            xattrs = {}
            if not stat.S_ISLNK(st.st_mode):
                for attr in sorted(os.listxattr(path, follow_symlinks=False)):
                    xattrs[attr] = os.getxattr(path, attr, follow_symlinks=False)
            extra: object = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    extra = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = st.st_rdev
            link = None
            if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                link = first_name.setdefault(st.st_ino, rel)
            mtime = None if stat.S_ISLNK(st.st_mode) else st.st_mtime_ns // 10**9
            result[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                           st.st_gid, mtime, extra, link, tuple(xattrs.items()))
    return result


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return out.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, *, linkname: str = "",
           mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    info.mtime = 1_700_000_000
    return info


def is_opaque(path: str) -> bool:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return wh.is_opaque_fd(fd)
    finally:
        os.close(fd)
