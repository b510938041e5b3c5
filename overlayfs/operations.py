"""pyfuse3 adapter over :class:`overlayfs.model.Union`.

Converts bytes names and inode numbers in, ``EntryAttributes`` or ``FUSEError`` out;
nothing else. errno mapping happens once, in :func:`_fuse_errors`.
"""

from __future__ import annotations

import errno
import functools
import logging
import os

import pyfuse3

from overlayfs import readahead
from overlayfs.config import MountConfig
from overlayfs.model import Union

log = logging.getLogger(__name__)

#: Lower layers never change while mounted and every upper change passes through
#: us, so the kernel may keep entries and attributes for a long time.
DEFAULT_TIMEOUT = 86400.0
#: A merged directory's st_nlink can change when it is copied up behind the
#: kernel's back (through a grandchild), so its attributes are kept briefly.
DIR_ATTR_TIMEOUT = 1.0


def _fuse_errors(method):
    """Map OSError to its errno; log anything unexpected once and answer EIO."""

    @functools.wraps(method)
    async def wrapper(self, *args):
        try:
            return method(self, *args)
        except pyfuse3.FUSEError:
            raise
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        except Exception:
            log.exception("%s%r failed", method.__name__, args)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


class UnionOperations(pyfuse3.Operations):
    supports_dot_lookup = True

    def __init__(self, union: Union, timeout: float):
        super().__init__()
        self.union = union
        self.timeout = timeout
        self.enable_writeback_cache = union.writable
        self.enable_acl = union.config.acl and union.config.xattrs
        self._dir_handles: dict[int, tuple[int, list | None]] = {}
        self._negative_entry: pyfuse3.EntryAttributes | None = None
        cfg = union.config
        self._ids_shown_as_stored = not (cfg.uid_mappings or cfg.gid_mappings) and \
            cfg.squash_to_uid is None and cfg.squash_to_gid is None
        self._next_dir_fh = 1
        self._read_ahead_pending = True

    def close(self) -> None:
        """The session is over: close every layer and file descriptor."""
        self._dir_handles.clear()
        self.union.close()

    # -- conversion -----------------------------------------------------------
    def _attr(self, node, st: os.stat_result) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = node.ino
        attr.generation = 0
        attr.entry_timeout = self.timeout
        attr.attr_timeout = DIR_ATTR_TIMEOUT if node.is_dir else self.timeout
        attr.st_mode = st.st_mode
        attr.st_nlink = st.st_nlink
        if self._ids_shown_as_stored:
            attr.st_uid = st.st_uid
            attr.st_gid = st.st_gid
        else:
            attr.st_uid, attr.st_gid = self.union.map_out(st.st_uid, st.st_gid)
        attr.st_rdev = st.st_rdev
        attr.st_size = st.st_size
        attr.st_blksize = st.st_blksize
        attr.st_blocks = st.st_blocks
        attr.st_atime_ns = st.st_atime_ns
        attr.st_mtime_ns = st.st_mtime_ns
        attr.st_ctime_ns = st.st_ctime_ns
        return attr

    def _negative(self) -> pyfuse3.EntryAttributes:
        if self._negative_entry is None:  # pyfuse3 only reads it: one serves every reply
            attr = pyfuse3.EntryAttributes()
            attr.st_ino = 0  # a cached negative entry
            attr.entry_timeout = self.timeout
            self._negative_entry = attr
        return self._negative_entry

    # -- lookups and attributes ----------------------------------------------
    @_fuse_errors
    def lookup(self, parent_inode, name, ctx):
        found = self.union.lookup(parent_inode, os.fsdecode(name))
        if found is None:
            return self._negative()
        return self._attr(*found)

    async def forget(self, inode_list):
        for inode, count in inode_list:
            self.union.forget(inode, count)

    @_fuse_errors
    def getattr(self, inode, ctx):
        return self._attr(*self.union.getattr(inode))

    @_fuse_errors
    def setattr(self, inode, attr, fields, fh, ctx):
        node, st = self.union.setattr(
            inode,
            mode=attr.st_mode if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            size=attr.st_size if fields.update_size else None,
            atime_ns=attr.st_atime_ns if fields.update_atime else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
            fh=fh)
        return self._attr(node, st)

    @_fuse_errors
    def readlink(self, inode, ctx):
        return os.fsencode(self.union.readlink(inode))

    @_fuse_errors
    def access(self, inode, mode, ctx):
        self.union.getattr(inode)  # permission bits are checked by the kernel
        return True

    # -- creating and removing names ------------------------------------------
    @_fuse_errors
    def mkdir(self, parent_inode, name, mode, ctx):
        return self._attr(*self.union.mkdir(parent_inode, os.fsdecode(name), mode,
                                            ctx.uid, ctx.gid))

    @_fuse_errors
    def mknod(self, parent_inode, name, mode, rdev, ctx):
        return self._attr(*self.union.mknod(parent_inode, os.fsdecode(name), mode, rdev,
                                            ctx.uid, ctx.gid))

    @_fuse_errors
    def symlink(self, parent_inode, name, target, ctx):
        return self._attr(*self.union.symlink(parent_inode, os.fsdecode(name),
                                              os.fsdecode(target), ctx.uid, ctx.gid))

    def _first_file_opened(self) -> None:
        """Requests come only once the INIT reply is in: the readahead may be raised."""
        self._read_ahead_pending = False
        readahead.raise_for(self.union.config.mountpoint)

    @_fuse_errors
    def create(self, parent_inode, name, mode, flags, ctx):
        if self._read_ahead_pending:
            self._first_file_opened()
        fh, node, st = self.union.create(parent_inode, os.fsdecode(name), mode, flags,
                                         ctx.uid, ctx.gid)
        return pyfuse3.FileInfo(fh=fh, keep_cache=True), self._attr(node, st)

    @_fuse_errors
    def link(self, inode, new_parent_inode, new_name, ctx):
        return self._attr(*self.union.link(inode, new_parent_inode, os.fsdecode(new_name)))

    @_fuse_errors
    def unlink(self, parent_inode, name, ctx):
        self.union.unlink(parent_inode, os.fsdecode(name))

    @_fuse_errors
    def rmdir(self, parent_inode, name, ctx):
        self.union.rmdir(parent_inode, os.fsdecode(name))

    @_fuse_errors
    def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        self.union.rename(parent_inode_old, os.fsdecode(name_old), parent_inode_new,
                          os.fsdecode(name_new), flags)

    # -- files ------------------------------------------------------------------
    @_fuse_errors
    def open(self, inode, flags, ctx):
        if self._read_ahead_pending:
            self._first_file_opened()
        return pyfuse3.FileInfo(fh=self.union.open(inode, flags), keep_cache=True)

    @_fuse_errors
    def read(self, fh, off, size):
        return os.pread(self.union.handle(fh).fd, size, off)

    @_fuse_errors
    def write(self, fh, off, buf):
        return os.pwrite(self.union.handle(fh).fd, buf, off)

    # No flush(): pyfuse3 answers ENOSYS, after which the kernel stops sending FLUSH
    # on every close (it still writes dirty pages back first).

    @_fuse_errors
    def release(self, fh):
        self.union.release(fh)

    @_fuse_errors
    def fsync(self, fh, datasync):
        self.union.fsync(fh, datasync)

    # -- directories ---------------------------------------------------------------
    @_fuse_errors
    def opendir(self, inode, ctx):
        node = self.union.nodes.get(inode)
        fh = self._next_dir_fh
        self._next_dir_fh += 1
        self._dir_handles[fh] = (node.ino, None)
        node.open_count += 1
        return fh

    @_fuse_errors
    def readdir(self, fh, start_id, token):
        ino, entries = self._dir_handles[fh]
        node = self.union.nodes.get(ino)
        if entries is None or start_id == 0:
            entries = self.union.list_dir(node)
            self._dir_handles[fh] = (ino, entries)
        # Offsets 1 and 2 are "." and ".."; entry i of the sorted list has offset i + 3.
        if start_id < 1:
            if not pyfuse3.readdir_reply(token, b".", self._attr(node, self.union.stat_node(node)), 1):
                return
        if start_id < 2:
            parent = node.names[0][0] if node.names else node
            if not pyfuse3.readdir_reply(token, b"..",
                                         self._attr(parent, self.union.stat_node(parent)), 2):
                return
        parent_paths: dict[int, str] = {}  # layer → this directory's path there
        for index in range(max(start_id - 2, 0), len(entries)):
            name, layer, several = entries[index]
            try:
                parent_path = parent_paths.get(layer)
                if parent_path is None:  # raises too once the directory itself is gone
                    parent_path = parent_paths[layer] = self.union.layer_path(node, layer)
                child, st = self.union.child_entry(node, name, layer, several, parent_path)
            except FileNotFoundError:
                continue  # removed since the listing was taken
            if not pyfuse3.readdir_reply(token, os.fsencode(name), self._attr(child, st),
                                         index + 3):
                self.union.nodes.maybe_retire(child)
                return
            child.lookups += 1

    @_fuse_errors
    def releasedir(self, fh):
        ino, _ = self._dir_handles.pop(fh)
        node = self.union.nodes.find(ino)
        if node is not None:
            node.open_count -= 1
            self.union.nodes.maybe_retire(node)

    @_fuse_errors
    def fsyncdir(self, fh, datasync):
        self.union.sync_upper()

    @_fuse_errors
    def statfs(self, ctx):
        sv = self.union.statfs()
        out = pyfuse3.StatvfsData()
        for name in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                     "f_ffree", "f_favail", "f_namemax"):
            setattr(out, name, getattr(sv, name))
        return out

    # -- extended attributes ----------------------------------------------------
    @_fuse_errors
    def getxattr(self, inode, name, ctx):
        value = self.union.getxattr(inode, os.fsdecode(name))
        if value is None:
            raise pyfuse3.FUSEError(errno.ENODATA)
        return value

    @_fuse_errors
    def listxattr(self, inode, ctx):
        return [os.fsencode(n) for n in self.union.listxattr(inode)]

    @_fuse_errors
    def setxattr(self, inode, name, value, ctx):
        self.union.setxattr(inode, os.fsdecode(name), value)

    @_fuse_errors
    def removexattr(self, inode, name, ctx):
        self.union.removexattr(inode, os.fsdecode(name))


def build(config: MountConfig) -> tuple[UnionOperations, set[str]]:
    """The Operations for CONFIG and the FUSE mount options it needs.

    Opens the layer directories now, so call it before daemonizing: a missing or
    unreadable layer is then reported by the foreground process.
    """
    os.umask(0)  # modes arrive with the caller's umask already applied
    union = Union(config)
    timeout = DEFAULT_TIMEOUT if config.timeout is None else config.timeout
    ops = UnionOperations(union, timeout)
    options = {f"fsname={config.source}", "subtype=layerbox-overlayfs", "default_permissions"}
    if os.geteuid() == 0:
        options |= {"suid", "dev"}
    if config.allow_other:
        options.add("allow_other")
    if config.read_only or config.upper is None:
        options.add("ro")
    options.update(config.kernel_options)
    return ops, options
