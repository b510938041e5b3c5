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

import pyfuse3

from overlayfs.mount import configure_logging, serve
from overlayfs.options import InfoRequested, OptionError, PROG, parse_command_line

HELLO = b"hello from tinyfs\n"
_ROOT = pyfuse3.ROOT_INODE
_FILES = {b"hello": (_ROOT + 1, HELLO), b"crash": (_ROOT + 2, b"never read\n")}


class TinyOperations(pyfuse3.Operations):
    def _attr(self, inode: int) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = inode
        attr.entry_timeout = attr.attr_timeout = 1.0
        if inode == _ROOT:
            attr.st_mode = stat.S_IFDIR | 0o755
            attr.st_nlink = 2
        else:
            attr.st_mode = stat.S_IFREG | 0o644
            attr.st_nlink = 1
            attr.st_size = len(self._content(inode))
        return attr

    @staticmethod
    def _content(inode: int) -> bytes:
        for ino, content in _FILES.values():
            if ino == inode:
                return content
        raise pyfuse3.FUSEError(errno.ENOENT)

    async def getattr(self, inode, ctx=None):
        if inode == _ROOT and os.environ.get("TINYFS_BROKEN_ROOT"):
            raise RuntimeError("tinyfs: deliberately broken root")
        if inode != _ROOT:
            self._content(inode)
        return self._attr(inode)

    async def lookup(self, parent_inode, name, ctx=None):
        if parent_inode != _ROOT or name not in _FILES:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(_FILES[name][0])

    async def opendir(self, inode, ctx):
        if inode != _ROOT:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    async def readdir(self, fh, start_id, token):
        names = sorted(_FILES)
        for index, name in enumerate(names[start_id:], start=start_id):
            if not pyfuse3.readdir_reply(token, name, self._attr(_FILES[name][0]), index + 1):
                return

    async def open(self, inode, flags, ctx):
        self._content(inode)
        return pyfuse3.FileInfo(fh=inode)

    async def read(self, fh, off, size):
        if fh == _FILES[b"crash"][0]:
            raise RuntimeError("tinyfs: deliberate crash in read()")
        return self._content(fh)[off:off + size]


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
