"""Layer-relative paths longer than the kernel takes in one system call.

The merged tree may be deeper than PATH_MAX: the kernel resolves paths on the mount a
name at a time, so nothing stops a process from creating ``a/b/c/...`` past 4096
bytes. Our own calls name entries by their path relative to a layer root, and a path
string handed to an ``*at`` call must stay under PATH_MAX (ENAMETOOLONG otherwise), so
:func:`near` walks down to a directory close enough to the entry for the rest to fit.
Short paths, nearly all of them, pass through untouched.
"""

from __future__ import annotations

import os

#: Bytes a relative path may have before we walk: PATH_MAX (4096, with its NUL) less
#: room for the "/proc/self/fd/N/" prefix that xattr calls put in front.
FITS = 4000
_WALK_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


class near:
    """``with near(dir_fd, rel) as (fd, path)``: (fd, path) naming DIR_FD/REL with a
    path short enough for one call. A class rather than a generator context manager:
    it is on the path of nearly every request, and short paths cost one length check."""

    __slots__ = ("_dir_fd", "_rel", "_fd")

    def __init__(self, dir_fd: int | None, rel: str):
        self._dir_fd, self._rel, self._fd = dir_fd, rel, None

    def __enter__(self) -> tuple[int | None, str]:
        dir_fd, rel = self._dir_fd, self._rel
        if dir_fd is None or len(rel) * 4 < FITS or len(os.fsencode(rel)) < FITS:
            return dir_fd, rel
        self._fd, rest = _walk(dir_fd, rel)
        return self._fd, rest

    def __exit__(self, *exc_info) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lstat(dir_fd: int, rel: str) -> os.stat_result:
    if len(rel) * 4 < FITS:  # the hottest call of all (every lookup): skip near()
        return os.stat(rel, dir_fd=dir_fd, follow_symlinks=False)
    with near(dir_fd, rel) as (fd, short):
        return os.stat(short, dir_fd=fd, follow_symlinks=False)


def _walk(dir_fd: int, rel: str) -> tuple[int, str]:
    parts = [os.fsencode(part) for part in rel.split("/")]
    fd = dir_fd
    try:
        while sum(len(part) + 1 for part in parts) > FITS:
            take, size = 0, 0
            while take < len(parts) - 1 and size + len(parts[take]) + 1 < FITS:
                size += len(parts[take]) + 1
                take += 1
            # Intermediate names are resolved as the whole path would resolve them.
            step = os.open(b"/".join(parts[:take]), _WALK_FLAGS, dir_fd=fd)
            if fd != dir_fd:
                os.close(fd)
            fd = step
            parts = parts[take:]
    except BaseException:
        if fd != dir_fd:
            os.close(fd)
        raise
    if fd == dir_fd:  # callers close what near() yields: hand over our own fd
        fd = os.open(".", _WALK_FLAGS, dir_fd=dir_fd)
    return fd, os.fsdecode(b"/".join(parts))
