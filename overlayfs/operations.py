"""The FUSE adapter over :class:`overlayfs.model.Union`: requests in (as
:mod:`overlayfs.fuse_session` hands them over), model calls, replies out.

Names arrive as bytes and go to the model as str; errors are OSError (the session turns
them into error replies); anything unexpected is logged once and answered with EIO.

Passthrough: a regular file whose data is in the upper layer is handed to the kernel
as a backing file when it is opened, so that its data never comes through here. A
file still in a lower layer is served by us (a later copy-up must be able to switch an
open file to the new copy, which a backing file cannot do), and so is an upper file
while one of those earlier opens of it is still open: the kernel allows one mode per
inode at a time. One backing id serves every open of an inode, as the kernel requires.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time

from overlayfs import fuse_abi as abi
from overlayfs import readahead
from overlayfs.config import MountConfig
from overlayfs.fuse_session import MAX_WRITE as MAX_READ
from overlayfs.fuse_session import has_capability
from overlayfs.model import Union
from overlayfs.mountinfo import fs_type_of

log = logging.getLogger(__name__)

#: Lower layers never change while mounted and every upper change passes through
#: us, so the kernel may keep entries and attributes for a long time.
DEFAULT_TIMEOUT = 86400.0
#: A merged directory's st_nlink can change when it is copied up behind the
#: kernel's back (through a grandchild), so its attributes are kept briefly.
DIR_ATTR_TIMEOUT = 1.0
CAP_FSETID = 4
#: File systems the kernel will not take backing files from (they are stacked
#: themselves: ELOOP), so asking for passthrough would only lose the writeback cache.
_STACKED_FS_TYPES = ("overlay", "fuse", "ecryptfs")

_pack_entry = abi.ENTRY_OUT.pack
_pack_attr_out = abi.ATTR_OUT.pack
_pack_dirent_plus = abi.DIRENT_PLUS.pack
_pack_dirent = abi.DIRENT.pack
_attr_fields = abi.attr_fields
_fsdecode = os.fsdecode


class UnionOperations:
    supports_dot_lookup = True

    def __init__(self, union: Union, timeout: float):
        self.union = union
        self.enable_writeback_cache = union.writable
        self.enable_passthrough = union.writable
        self.enable_acl = union.config.acl and union.config.xattrs
        self.session = None
        self._dir_handles: dict[int, tuple[int, list | None]] = {}
        self._next_dir_fh = 1
        self._read_ahead_pending = True
        cfg = union.config
        self._ids_shown_as_stored = not (cfg.uid_mappings or cfg.gid_mappings) and \
            cfg.squash_to_uid is None and cfg.squash_to_gid is None
        #: (seconds, nanoseconds): entries, and attributes of all but directories.
        self._times = abi.timeout_parts(timeout)
        self._dir_times = abi.timeout_parts(DIR_ATTR_TIMEOUT)
        entry_s, entry_ns = self._times
        #: nodeid 0: the kernel keeps "no such name" for the entry timeout.
        self._negative = _pack_entry(0, 0, entry_s, 0, entry_ns, 0, *(0,) * 16)
        self._read_buffer = memoryview(bytearray(MAX_READ))
        #: ino → [backing id, opens] of inodes the kernel reads and writes itself.
        self._backing: dict[int, list[int]] = {}
        #: ino → opens we serve, of regular files; fh → ino for either kind.
        self._served: dict[int, int] = {}
        self._fh_backed: dict[int, int] = {}
        self._fh_served: dict[int, int] = {}

    def init(self, session) -> None:
        self.session = session

    @property
    def _passing_through(self) -> bool:
        return self.session is not None and self.session.passthrough

    def close(self) -> None:
        """The session is over: close every layer and file descriptor."""
        self._dir_handles.clear()
        self.union.close()

    def failed(self, opcode: int, exc: Exception) -> int:
        if isinstance(exc, KeyError):
            return errno.ENOENT      # an inode or handle we no longer know
        log.exception("%s failed", abi.NAMES.get(opcode, opcode))
        return errno.EIO

    # -- conversion -------------------------------------------------------------------------
    def _ids(self, st: os.stat_result) -> tuple[int, int]:
        if self._ids_shown_as_stored:
            return st.st_uid, st.st_gid
        return self.union.map_out(st.st_uid, st.st_gid)

    def _entry(self, node, st: os.stat_result) -> bytes:
        entry_s, entry_ns = self._times
        attr_s, attr_ns = self._dir_times if node.is_dir else self._times
        return _pack_entry(node.ino, 0, entry_s, attr_s, entry_ns, attr_ns,
                           *_attr_fields(node.ino, st, *self._ids(st)))

    def _attr_reply(self, node, st: os.stat_result) -> bytes:
        attr_s, attr_ns = self._dir_times if node.is_dir else self._times
        return _pack_attr_out(attr_s, attr_ns, 0, *_attr_fields(node.ino, st, *self._ids(st)))

    # -- lookups and attributes -------------------------------------------------------------
    def op_lookup(self, nodeid, body, header):
        found = self.union.lookup(nodeid, _fsdecode(abi.name_of(body)))
        if found is None:
            return self._negative
        return self._entry(*found)

    def op_forget(self, nodeid, body, header):
        self.union.forget(nodeid, abi.FORGET_IN.unpack_from(body)[0])

    def op_batch_forget(self, nodeid, body, header):
        count = abi.BATCH_FORGET_IN.unpack_from(body)[0]
        forget = self.union.forget
        for ino, lookups in abi.FORGET_ONE.iter_unpack(body[8:8 + 16 * count]):
            forget(ino, lookups)

    def op_getattr(self, nodeid, body, header):
        return self._attr_reply(*self.union.getattr(nodeid))

    def op_setattr(self, nodeid, body, header):
        (valid, _, fh, size, _, atime, mtime, _, atime_ns, mtime_ns, _, mode, _, uid, gid,
         _) = abi.SETATTR_IN.unpack_from(body)
        if valid & (abi.FATTR_ATIME_NOW | abi.FATTR_MTIME_NOW):
            now = time.time_ns()
        node, st = self.union.setattr(
            nodeid,
            mode=mode if valid & abi.FATTR_MODE else None,
            uid=uid if valid & abi.FATTR_UID else None,
            gid=gid if valid & abi.FATTR_GID else None,
            size=size if valid & abi.FATTR_SIZE else None,
            atime_ns=(now if valid & abi.FATTR_ATIME_NOW else atime * 1_000_000_000 + atime_ns)
            if valid & abi.FATTR_ATIME else None,
            mtime_ns=(now if valid & abi.FATTR_MTIME_NOW else mtime * 1_000_000_000 + mtime_ns)
            if valid & abi.FATTR_MTIME else None,
            fh=fh if valid & abi.FATTR_FH else None)
        return self._attr_reply(node, st)

    def op_readlink(self, nodeid, body, header):
        return os.fsencode(self.union.readlink(nodeid))

    def op_access(self, nodeid, body, header):
        self.union.getattr(nodeid)  # permission bits are checked by the kernel
        return b""

    # -- creating and removing names --------------------------------------------------------
    def op_mkdir(self, nodeid, body, header):
        mode = abi.MKDIR_IN.unpack_from(body)[0]
        name = _fsdecode(abi.name_of(body[abi.MKDIR_IN.size:]))
        return self._entry(*self.union.mkdir(nodeid, name, mode, header[4], header[5]))

    def op_mknod(self, nodeid, body, header):
        mode, rdev, _, _ = abi.MKNOD_IN.unpack_from(body)
        name = _fsdecode(abi.name_of(body[abi.MKNOD_IN.size:]))
        return self._entry(*self.union.mknod(nodeid, name, mode, rdev, header[4], header[5]))

    def op_symlink(self, nodeid, body, header):
        name, target = abi.split_names(body, 2)
        return self._entry(*self.union.symlink(nodeid, _fsdecode(name), _fsdecode(target),
                                               header[4], header[5]))

    def op_create(self, nodeid, body, header):
        if self._read_ahead_pending:
            self._first_file_opened()
        flags, mode, _, _ = abi.CREATE_IN.unpack_from(body)
        name = _fsdecode(abi.name_of(body[abi.CREATE_IN.size:]))
        fh, node, st = self.union.create(nodeid, name, mode, flags, header[4], header[5])
        return [self._entry(node, st), self._open_reply(fh)]

    def op_link(self, nodeid, body, header):
        old = abi.LINK_IN.unpack_from(body)[0]
        name = _fsdecode(abi.name_of(body[abi.LINK_IN.size:]))
        return self._entry(*self.union.link(old, nodeid, name))

    def op_unlink(self, nodeid, body, header):
        self.union.unlink(nodeid, _fsdecode(abi.name_of(body)))
        return b""

    def op_rmdir(self, nodeid, body, header):
        self.union.rmdir(nodeid, _fsdecode(abi.name_of(body)))
        return b""

    def op_rename(self, nodeid, body, header):
        new_dir = abi.RENAME_IN.unpack_from(body)[0]
        old, new = abi.split_names(body[abi.RENAME_IN.size:], 2)
        self.union.rename(nodeid, _fsdecode(old), new_dir, _fsdecode(new), 0)
        return b""

    def op_rename2(self, nodeid, body, header):
        new_dir, flags, _ = abi.RENAME2_IN.unpack_from(body)
        old, new = abi.split_names(body[abi.RENAME2_IN.size:], 2)
        self.union.rename(nodeid, _fsdecode(old), new_dir, _fsdecode(new), flags)
        return b""

    # -- files ------------------------------------------------------------------------------
    def _first_file_opened(self) -> None:
        """Requests come only once the INIT reply is in: the readahead may be raised."""
        self._read_ahead_pending = False
        readahead.raise_for(self.union.config.mountpoint)

    def op_open(self, nodeid, body, header):
        if self._read_ahead_pending:
            self._first_file_opened()
        flags = abi.OPEN_IN.unpack_from(body)[0]
        fh = self.union.open(nodeid, flags)
        if flags & os.O_TRUNC:
            try:
                self._drop_set_id_bits(nodeid, fh, header[6])
            except BaseException:
                self.union.release(fh)   # the OPEN fails: no RELEASE will come for it
                raise
        return self._open_reply(fh)

    def _drop_set_id_bits(self, nodeid: int, fh: int, pid: int) -> None:
        """Truncation by open(O_TRUNC) happens here (ATOMIC_O_TRUNC), so the kernel does
        not clear set-user-id and group-executable set-group-id as it does for other
        truncations: we do, by its rule (the caller lacks CAP_FSETID in the initial
        user namespace). A set-group-id without group execute is kept, as FUSE's own
        SETATTR path keeps it."""
        node, st = self.union.getattr(nodeid)
        mode = st.st_mode
        drop = stat.S_ISUID | (stat.S_ISGID if mode & stat.S_IXGRP else 0)
        if not mode & drop or not stat.S_ISREG(mode) or has_capability(pid, CAP_FSETID):
            return
        self.union.setattr(nodeid, mode=stat.S_IMODE(mode) & ~drop, fh=fh)
        if self.session is not None:
            self.session.invalidate_attributes(nodeid)   # it caches the old mode

    def _open_reply(self, fh: int) -> bytes:
        """OPEN's answer for the handle FH: with a backing id where the kernel may do the
        file's I/O itself (see the module's docstring), else served by us."""
        handle = self.union.handle(fh)
        ino = handle.node.ino
        backing = self._backing.get(ino)
        if backing is None and handle.layer == 0 and not self._served.get(ino) \
                and self._passing_through:
            backing = self._new_backing(handle)
        if backing is not None:
            backing[1] += 1
            self._fh_backed[fh] = ino
            return abi.OPEN_OUT.pack(fh, abi.FOPEN_PASSTHROUGH, backing[0])
        self._served[ino] = self._served.get(ino, 0) + 1   # OPEN is for regular files only
        self._fh_served[fh] = ino
        # Upper files can have changed under a backing id since the kernel cached their
        # pages: it must not keep them. Lower files never change.
        keep = handle.layer != 0 or not self._passing_through
        return abi.OPEN_OUT.pack(fh, abi.FOPEN_KEEP_CACHE if keep else 0, 0)

    def _new_backing(self, handle) -> list[int] | None:
        # Any open fd of the file will do, whatever its mode: the kernel opens the
        # backing file anew for each FUSE file, with that file's flags.
        backing_id = self.session.open_backing(handle.fd)
        if backing_id is None:
            return None
        self._backing[handle.node.ino] = backing = [backing_id, 0]
        return backing

    def op_read(self, nodeid, body, header):
        fh, offset, size, _ = abi.READ_IN.unpack_from(body)
        into = self._read_buffer[:size]     # written out before the next request is read
        return into[:os.preadv(self.union.handle(fh).fd, (into,), offset)]

    def op_write(self, nodeid, body, header):
        fh, offset, size, _, _, _, _ = abi.WRITE_IN.unpack_from(body)
        data = body[abi.WRITE_IN_SIZE:abi.WRITE_IN_SIZE + size]
        return abi.WRITE_OUT.pack(os.pwrite(self.union.handle(fh).fd, data, offset), 0)

    # No op_flush: ENOSYS, after which the kernel stops sending FLUSH on every close
    # (it still writes dirty pages back first).

    def op_release(self, nodeid, body, header):
        fh = abi.RELEASE_IN.unpack_from(body)[0]
        try:
            self.union.release(fh)
        finally:
            self._forget_open(fh)
        return b""

    def _forget_open(self, fh: int) -> None:
        ino = self._fh_backed.pop(fh, None)
        if ino is not None:
            backing = self._backing[ino]
            backing[1] -= 1
            if backing[1] == 0:
                del self._backing[ino]
                self.session.close_backing(backing[0])
            return
        ino = self._fh_served.pop(fh, None)
        if ino is not None:
            left = self._served[ino] - 1
            if left:
                self._served[ino] = left
            else:
                del self._served[ino]

    def op_fsync(self, nodeid, body, header):
        fh, flags, _ = abi.FSYNC_IN.unpack_from(body)
        self.union.fsync(fh, bool(flags & abi.FSYNC_FDATASYNC))
        return b""

    # -- directories ------------------------------------------------------------------------
    def op_opendir(self, nodeid, body, header):
        node = self.union.nodes.get(nodeid)
        fh = self._next_dir_fh
        self._next_dir_fh += 1
        self._dir_handles[fh] = (node.ino, None)
        node.open_count += 1
        return abi.OPEN_OUT.pack(fh, 0, 0)

    # One piece, not one per entry: since 6.16 a READDIRPLUS buffer can hold more
    # entries than writev takes pieces (IOV_MAX).
    def op_readdirplus(self, nodeid, body, header):
        return b"".join(self._readdir(body, plus=True))

    def op_readdir(self, nodeid, body, header):
        return b"".join(self._readdir(body, plus=False))

    def _readdir(self, body, plus: bool) -> list:
        fh, start, size, _ = abi.READ_IN.unpack_from(body)
        ino, entries = self._dir_handles[fh]
        union = self.union
        node = union.nodes.get(ino)
        if entries is None or start == 0:
            entries = union.list_dir(node)
            self._dir_handles[fh] = (ino, entries)
        out: list = []
        room = size
        # Offsets 1 and 2 are "." and ".."; entry i of the sorted list has offset i + 3.
        # The kernel takes no attributes for the two (nodeid 0: none given).
        dots = ((b".", node.ino, 1), (b"..", (node.names[0][0] if node.names else node).ino, 2))
        for name, dot_ino, offset in dots[start:]:
            piece = self._dirent(plus, None, None, name, offset, dot_ino, stat.S_IFDIR)
            if len(piece) > room:
                return out
            room -= len(piece)
            out.append(piece)
        parent_paths: dict[int, str] = {}  # layer → this directory's path there
        for index in range(max(start - 2, 0), len(entries)):
            name, layer, several = entries[index]
            try:
                parent_path = parent_paths.get(layer)
                if parent_path is None:  # raises too once the directory itself is gone
                    parent_path = parent_paths[layer] = union.layer_path(node, layer)
                child, st = union.child_entry(node, name, layer, several, parent_path)
            except FileNotFoundError:
                continue  # removed since the listing was taken
            piece = self._dirent(plus, child, st, os.fsencode(name), index + 3, child.ino,
                                 st.st_mode)
            if len(piece) > room:
                union.nodes.maybe_retire(child)
                break
            room -= len(piece)
            out.append(piece)
            if plus:
                child.lookups += 1   # the kernel counts one for every entry it is sent
        return out

    def _dirent(self, plus: bool, node, st, name: bytes, offset: int, ino: int,
                mode: int) -> bytes:
        kind = abi.dirent_type(mode)
        if not plus:
            return _pack_dirent(ino, offset, len(name), kind) + abi.padded(name)
        if node is None:
            return _pack_dirent_plus(0, 0, 0, 0, 0, 0, *(0,) * 16, ino, offset, len(name),
                                     kind) + abi.padded(name)
        entry_s, entry_ns = self._times
        attr_s, attr_ns = self._dir_times if node.is_dir else self._times
        return _pack_dirent_plus(ino, 0, entry_s, attr_s, entry_ns, attr_ns,
                                 *_attr_fields(ino, st, *self._ids(st)),
                                 ino, offset, len(name), kind) + abi.padded(name)

    def op_releasedir(self, nodeid, body, header):
        fh = abi.RELEASE_IN.unpack_from(body)[0]
        ino, _ = self._dir_handles.pop(fh)
        node = self.union.nodes.find(ino)
        if node is not None:
            node.open_count -= 1
            self.union.nodes.maybe_retire(node)
        return b""

    def op_fsyncdir(self, nodeid, body, header):
        self.union.sync_upper()
        return b""

    def op_statfs(self, nodeid, body, header):
        sv = self.union.statfs()
        return abi.STATFS_OUT.pack(sv.f_blocks, sv.f_bfree, sv.f_bavail, sv.f_files,
                                   sv.f_ffree, sv.f_bsize, sv.f_namemax, sv.f_frsize)

    # -- extended attributes ------------------------------------------------------------------
    def op_getxattr(self, nodeid, body, header):
        size = abi.XATTR_SIZE.unpack_from(body)[0]
        value = self.union.getxattr(nodeid, _fsdecode(abi.name_of(body[abi.XATTR_SIZE.size:])))
        if value is None:
            raise OSError(errno.ENODATA, "no such attribute")
        return _sized(value, size)

    def op_listxattr(self, nodeid, body, header):
        size = abi.XATTR_SIZE.unpack_from(body)[0]
        names = b"".join(os.fsencode(n) + b"\0" for n in self.union.listxattr(nodeid))
        return _sized(names, size)

    def op_setxattr(self, nodeid, body, header):
        size, flags = abi.XATTR_SIZE.unpack_from(body)
        rest = bytes(body[abi.XATTR_SIZE.size:])
        name, _, value = rest.partition(b"\0")
        self.union.setxattr(nodeid, _fsdecode(name), value[:size], flags)
        return b""

    def op_removexattr(self, nodeid, body, header):
        self.union.removexattr(nodeid, _fsdecode(abi.name_of(body)))
        return b""


def _sized(value: bytes, size: int) -> bytes:
    """GETXATTR/LISTXATTR: the length alone when asked with size 0, ERANGE if too big."""
    if size == 0:
        return abi.XATTR_SIZE.pack(len(value), 0)
    if len(value) > size:
        raise OSError(errno.ERANGE, "buffer too small")
    return value


def build(config: MountConfig) -> tuple[UnionOperations, set[str]]:
    """The operations for CONFIG and the FUSE mount options it needs.

    Opens the layer directories now, so call it before daemonizing: a missing or
    unreadable layer is then reported by the foreground process.
    """
    os.umask(0)  # modes arrive with the caller's umask already applied
    union = Union(config)
    timeout = DEFAULT_TIMEOUT if config.timeout is None else config.timeout
    ops = UnionOperations(union, timeout)
    if config.upper is not None and fs_type_of(config.upper).split(".")[0] in _STACKED_FS_TYPES:
        ops.enable_passthrough = False
    options = {f"fsname={config.source}", "subtype=layerbox-overlayfs", "default_permissions"}
    if os.geteuid() == 0:
        options |= {"suid", "dev"}
    if config.allow_other:
        options.add("allow_other")
    if config.read_only or config.upper is None:
        options.add("ro")
    options.update(config.kernel_options)
    return ops, options
