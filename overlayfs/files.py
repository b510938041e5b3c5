"""Open files, attributes and extended attributes (a mixin of :class:`overlayfs.model.Union`).

Any change to an entry's data or metadata copies it up first; reads of a file that
was copied up after it was opened switch to the new copy, as the kernel overlay does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from overlayfs import whiteout as wh
from overlayfs.copyup import proc_path
from overlayfs.longpath import near
from overlayfs.nodes import ROOT_INODE, Node, os_error as _err


#: How much of a file opened for reading is asked from the disk at open time.
PREFETCH_BYTES = 128 << 10


def _start_reading(fd: int) -> None:
    """Have the disk start on the first PREFETCH_BYTES of FD (clipped at its end) while
    our OPEN reply travels and the READ that nearly always follows comes in: cold,
    that READ then waits for less than a whole disk read. Reading a small cold file
    is otherwise three strictly serial steps (OPEN, READ, disk) through one task.
    SEQUENTIAL doubles the disk's readahead for FD: a big file is read front to back
    in the READs the kernel sends (a cold 512 MB read swung less with it)."""
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        os.posix_fadvise(fd, 0, PREFETCH_BYTES, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass  # a FIFO or a device: nothing to read ahead


class Handle:
    """An open file: the node, the backing fd and the layer it was opened in."""

    __slots__ = ("node", "fd", "layer", "writable", "flags")

    def __init__(self, node: Node, fd: int, layer: int, writable: bool, flags: int):
        self.node = node
        self.fd = fd
        self.layer = layer
        self.writable = writable
        self.flags = flags



class FilesAndMetadata:
    def map_in(self, uid: int, gid: int) -> tuple[int, int]:
        """Ids as the mount shows them → ids stored in the upper layer."""
        return (_map_id(uid, self.config.uid_mappings, reverse=False),
                _map_id(gid, self.config.gid_mappings, reverse=False))

    def map_out(self, uid: int, gid: int) -> tuple[int, int]:
        """Stored ids → ids the mount shows."""
        cfg = self.config
        uid = cfg.squash_to_uid if cfg.squash_to_uid is not None else \
            _map_id(uid, cfg.uid_mappings, reverse=True)
        gid = cfg.squash_to_gid if cfg.squash_to_gid is not None else \
            _map_id(gid, cfg.gid_mappings, reverse=True)
        return uid, gid

    def setattr(self, ino: int, *, mode=None, uid=None, gid=None, size=None,
                atime_ns=None, mtime_ns=None, fh=None):
        node = self.nodes.get(ino)
        handle = self._handles.get(fh) if fh is not None else None
        # The root has no name but is never unlinked: chown/chmod of the mountpoint
        # (Podman chowns every container's rootfs) changes the upper root.
        named = bool(node.names) or node.ino == ROOT_INODE
        if named:
            self.copy_up(node, with_data=not (size == 0 and mode is None and uid is None
                                              and gid is None and atime_ns is None
                                              and mtime_ns is None))
        elif handle is None or handle.layer != 0:
            raise _err(errno.ENOENT)
        fd, rel = self.backing(node) if named else (None, None)
        with near(fd, rel) as (fd, rel):
            self._set_attributes(node, handle, fd, rel, mode, uid, gid, size, atime_ns,
                                 mtime_ns)
        return node, self.stat_node(node)

    def _set_attributes(self, node, handle, fd, rel, mode, uid, gid, size, atime_ns,
                        mtime_ns) -> None:
        """The changes of :meth:`setattr` on the backing file (FD, REL), or on HANDLE's
        fd when FD is None (the file has no name left)."""
        if mode is not None:
            if fd is None:
                os.fchmod(handle.fd, stat.S_IMODE(mode))
            else:
                os.chmod(rel, stat.S_IMODE(mode), dir_fd=fd)
        if uid is not None or gid is not None:
            new_uid, new_gid = self.map_in(-1 if uid is None else uid, -1 if gid is None else gid)
            if uid is None:
                new_uid = -1
            if gid is None:
                new_gid = -1
            if fd is None:
                os.fchown(handle.fd, new_uid, new_gid)
            else:
                os.chown(rel, new_uid, new_gid, dir_fd=fd, follow_symlinks=False)
        if size is not None:
            if handle is not None and handle.writable and handle.layer == 0:
                os.ftruncate(handle.fd, size)
            else:
                tfd = os.open(rel, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                try:
                    os.ftruncate(tfd, size)
                finally:
                    os.close(tfd)
        if atime_ns is not None or mtime_ns is not None:
            if atime_ns is None or mtime_ns is None:
                cur = os.fstat(handle.fd) if fd is None else \
                    os.stat(rel, dir_fd=fd, follow_symlinks=False)
                atime_ns = cur.st_atime_ns if atime_ns is None else atime_ns
                mtime_ns = cur.st_mtime_ns if mtime_ns is None else mtime_ns
            if fd is None:
                os.utime(handle.fd, ns=(atime_ns, mtime_ns))
            else:
                os.utime(rel, ns=(atime_ns, mtime_ns), dir_fd=fd, follow_symlinks=False)

    def readlink(self, ino: int) -> str:
        with near(*self.backing(self.nodes.get(ino))) as (fd, rel):
            return os.readlink(rel, dir_fd=fd)

    @contextlib.contextmanager
    def _xattr_path(self, node: Node):
        """A path to NODE's backing file for the xattr calls (they have no ``*at`` form)."""
        with near(*self.backing(node)) as (fd, rel):
            yield proc_path(fd, rel)

    def _xattr_names(self, node: Node) -> tuple[str, ...]:
        if node.layer > 0 and node.origin is None:
            if node.lower_xattrs is None:
                with self._xattr_path(node) as path:
                    node.lower_xattrs = tuple(os.listxattr(path, follow_symlinks=False))
            return node.lower_xattrs
        with self._xattr_path(node) as path:
            return tuple(os.listxattr(path, follow_symlinks=False))

    def _has_no_xattrs(self, node: Node) -> bool:
        """True if NODE's upper file has no xattrs but our private ones (which only we
        set and nobody sees); asks the file system once."""
        if node.no_upper_xattrs is None:
            with self._xattr_path(node) as path:
                names = os.listxattr(path, follow_symlinks=False)
            node.no_upper_xattrs = all(wh.is_private_xattr(n) for n in names)
        return node.no_upper_xattrs

    def getxattr(self, ino: int, name: str) -> bytes | None:
        """NAME's value; None (ENODATA) if the entry has no such attribute, without an
        exception: the kernel asks for ``security.capability`` before every write."""
        if wh.is_private_xattr(name) or not self.config.xattrs:
            return None
        node = self.nodes.get(ino)
        if node.layer > 0 and node.origin is None:
            if name not in self._xattr_names(node):
                return None
        elif self._has_no_xattrs(node):
            return None
        with self._xattr_path(node) as path:
            return os.getxattr(path, name, follow_symlinks=False)

    def listxattr(self, ino: int) -> list[str]:
        if not self.config.xattrs:
            return []
        node = self.nodes.get(ino)
        if (node.layer == 0 or node.origin is not None) and self._has_no_xattrs(node):
            return []
        return [n for n in self._xattr_names(node) if not wh.is_private_xattr(n)]

    def setxattr(self, ino: int, name: str, value: bytes, flags: int = 0) -> None:
        """FLAGS: XATTR_CREATE or XATTR_REPLACE, checked against the merged view before
        anything is copied up."""
        if not self.config.xattrs:
            raise _err(errno.ENOTSUP)
        if wh.is_private_xattr(name):
            raise _err(errno.EPERM)
        if flags & (os.XATTR_CREATE | os.XATTR_REPLACE):
            exists = self.getxattr(ino, name) is not None
            if flags & os.XATTR_CREATE and exists:
                raise _err(errno.EEXIST)
            if flags & os.XATTR_REPLACE and not exists:
                raise _err(errno.ENODATA)
        node = self.nodes.get(ino)
        self.copy_up(node)
        node.no_upper_xattrs = None  # before the call: it may fail half-way
        with self._xattr_path(node) as path:
            os.setxattr(path, name, value, follow_symlinks=False)

    def removexattr(self, ino: int, name: str) -> None:
        if wh.is_private_xattr(name) or not self.config.xattrs:
            raise _err(errno.ENODATA)
        node = self.nodes.get(ino)
        self.copy_up(node)
        node.no_upper_xattrs = None
        with self._xattr_path(node) as path:
            os.removexattr(path, name, follow_symlinks=False)

    def statfs(self) -> os.statvfs_result:
        return os.statvfs(f"/proc/self/fd/{self._fds[0]}")

    # ------------------------------------------------------------------ files
    def _open_flags(self, flags: int) -> int:
        flags &= ~(os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_TRUNC)
        if (flags & os.O_ACCMODE) == os.O_WRONLY:
            # The writeback cache may read pages of a file opened write-only.
            flags = (flags & ~os.O_ACCMODE) | os.O_RDWR
        flags &= ~os.O_APPEND  # the kernel positions appends itself with writeback
        return flags | os.O_CLOEXEC | os.O_NOFOLLOW

    def _add_handle(self, node: Node, fd: int, layer: int, writable: bool, flags: int) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = Handle(node, fd, layer, writable, flags)
        node.open_count += 1
        return fh

    def open(self, ino: int, flags: int) -> int:
        node = self.nodes.get(ino)
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY or bool(flags & os.O_TRUNC)
        if writable:
            self.copy_up(node, with_data=not flags & os.O_TRUNC)
        real_flags = self._open_flags(flags) if writable else \
            (flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_APPEND)) | os.O_CLOEXEC
        with near(*self.backing(node)) as (fd, rel):
            handle_fd = os.open(rel, real_flags, dir_fd=fd)
            if flags & os.O_TRUNC:   # inside: a deep path's FD is near()'s, closed after
                try:
                    self._truncate_opened(handle_fd, fd, rel, flags)
                except BaseException:
                    os.close(handle_fd)
                    raise
        if not flags & os.O_TRUNC and not writable and not node.is_dir:
            _start_reading(handle_fd)
        return self._add_handle(node, handle_fd, node.layer, writable, flags)

    @staticmethod
    def _truncate_opened(handle_fd: int, dir_fd: int, rel: str, flags: int) -> None:
        if (flags & os.O_ACCMODE) != os.O_RDONLY:
            os.ftruncate(handle_fd, 0)
            return
        # Linux truncates on O_RDONLY|O_TRUNC as well (the kernel overlay too), but
        # ftruncate() refuses a read-only descriptor, so truncate through a
        # short-lived writable one; the handle itself stays read-only.
        tfd = os.open(rel, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            os.ftruncate(tfd, 0)
        finally:
            os.close(tfd)

    def handle(self, fh: int) -> Handle:
        handle = self._handles[fh]
        if handle.layer != 0 and handle.node.layer == 0 and handle.node.names:
            # Copied up since it was opened: read the new copy, as the kernel overlay does.
            with near(*self.backing(handle.node)) as (fd, rel):
                new_fd = os.open(rel, os.O_RDONLY | os.O_CLOEXEC, dir_fd=fd)
            os.close(handle.fd)
            handle.fd, handle.layer = new_fd, 0
        return handle

    def release(self, fh: int) -> None:
        handle = self._handles.pop(fh)
        os.close(handle.fd)
        handle.node.open_count -= 1
        self.nodes.maybe_retire(handle.node)

    def fsync(self, fh: int, datasync: bool) -> None:
        if not self.config.fsync:
            return
        handle = self._handles[fh]
        if handle.writable:
            (os.fdatasync if datasync else os.fsync)(handle.fd)

    def sync_upper(self) -> None:
        if self.has_upper and self.config.fsync:
            os.fsync(self._fds[0])


def _map_id(value: int, mappings, *, reverse: bool) -> int:
    if not mappings or value == -1:
        return value
    for shown, stored, length in mappings:
        src, dst = (stored, shown) if reverse else (shown, stored)
        if src <= value < src + length:
            return dst + (value - src)
    return 65534

