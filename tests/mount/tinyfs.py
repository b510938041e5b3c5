"""A tiny read-only filesystem to test the mount program's lifecycle without the union.

    python -m tests.mount.tinyfs [layerbox-overlayfs arguments]

takes the real command line (``-o lowerdir=`` must name an existing dir, but nothing is
read from it) and serves a root holding ``hello`` (fixed text) and ``crash`` (reading
it raises an unexpected exception, which ends the serving loop: the crash path).
With ``TINYFS_BROKEN_ROOT=1`` in the environment, even the root's getattr crashes,
so the server dies before it ever serves.
"""

from __future__ import annotations

import errno
import os
import stat
import sys

from overlayfs import fuse_abi as abi
from overlayfs.mount import configure_logging, serve
from overlayfs.options import InfoRequested, OptionError, PROG, parse_command_line

HELLO = b"hello from tinyfs\n"
_ROOT = abi.ROOT_ID
_FILES = {b"hello": (_ROOT + 1, HELLO), b"crash": (_ROOT + 2, b"never read\n")}


class _Stat:
    """What abi.attr_fields reads of an os.stat_result."""

    st_blocks = st_atime_ns = st_mtime_ns = st_ctime_ns = st_rdev = 0
    st_uid = st_gid = 0
    st_blksize = 4096

    def __init__(self, mode: int, nlink: int, size: int):
        self.st_mode, self.st_nlink, self.st_size = mode, nlink, size


class TinyOperations:
    def _fields(self, inode: int) -> tuple:
        if inode == _ROOT:
            st = _Stat(stat.S_IFDIR | 0o755, 2, 0)
        else:
            st = _Stat(stat.S_IFREG | 0o644, 1, len(self._content(inode)))
        return abi.attr_fields(inode, st, 0, 0)

    @staticmethod
    def _content(inode: int) -> bytes:
        for ino, content in _FILES.values():
            if ino == inode:
                return content
        raise OSError(errno.ENOENT, "no such file")

    def op_getattr(self, nodeid, body, header):
        if nodeid == _ROOT and os.environ.get("TINYFS_BROKEN_ROOT"):
            raise RuntimeError("tinyfs: deliberately broken root")
        return abi.ATTR_OUT.pack(1, 0, 0, *self._fields(nodeid))

    def op_lookup(self, nodeid, body, header):
        name = abi.name_of(body)
        if nodeid != _ROOT or name not in _FILES:
            raise OSError(errno.ENOENT, "no such file")
        inode = _FILES[name][0]
        return abi.ENTRY_OUT.pack(inode, 0, 1, 1, 0, 0, *self._fields(inode))

    def op_opendir(self, nodeid, body, header):
        if nodeid != _ROOT:
            raise OSError(errno.ENOTDIR, "not a directory")
        return abi.OPEN_OUT.pack(nodeid, 0, 0)

    def op_readdirplus(self, nodeid, body, header):
        _, start, size, _ = abi.READ_IN.unpack_from(body)
        out, room = [], size
        for offset, name in enumerate(sorted(_FILES)[start:], start=start + 1):
            inode = _FILES[name][0]
            piece = abi.DIRENT_PLUS.pack(inode, 0, 1, 1, 0, 0, *self._fields(inode), inode,
                                         offset, len(name), stat.S_IFREG >> 12) + abi.padded(name)
            if len(piece) > room:
                break
            room -= len(piece)
            out.append(piece)
        return out

    def op_releasedir(self, nodeid, body, header):
        return b""

    def op_open(self, nodeid, body, header):
        self._content(nodeid)
        return abi.OPEN_OUT.pack(nodeid, 0, 0)

    def op_read(self, nodeid, body, header):
        fh, offset, size, _ = abi.READ_IN.unpack_from(body)
        if fh == _FILES[b"crash"][0]:
            raise RuntimeError("tinyfs: deliberate crash in read()")
        return self._content(fh)[offset:offset + size]

    def op_release(self, nodeid, body, header):
        return b""


def main(argv: list[str]) -> int:
    try:
        config = parse_command_line(argv)
    except InfoRequested as info:
        sys.stdout.write(info.text)
        return 0
    except OptionError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    for warning in config.warnings:
        print(warning, file=sys.stderr)
    configure_logging(config)
    options = {"fsname=tinyfs", "subtype=tinyfs", "default_permissions", "ro",
               *config.kernel_options}
    return serve(config, TinyOperations(), options)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
