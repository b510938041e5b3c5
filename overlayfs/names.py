"""Creating and removing names in the merged view (a mixin of :class:`overlayfs.model.Union`).

New entries are always made in the upper layer; a name that hid a lower entry is
created over its whiteout, and a new directory there is made opaque so the lower
directory's old contents stay hidden. Removing an entry that a lower layer still
shows leaves a whiteout and copies nothing up.
"""

from __future__ import annotations

import errno
import os
import stat

from overlayfs import whiteout as wh
from overlayfs.copyup import remove_entry
from overlayfs.longpath import lstat, near
from overlayfs.nodes import Node, check_name, child_path, os_error as _err
from overlayfs.rename import rename as _rename


class NameChanges:
    def _lower_has(self, parent: Node, name: str) -> bool:
        """True if a layer below the upper shows an entry at PARENT/NAME."""
        for layer in self.dir_layers(parent):
            if layer == 0:
                continue
            rel = self.child_layer_path(parent, name, layer)
            found = self._lstat_in(layer, rel)
            if found is None:
                continue
            return found is not False
        return False

    def _prepare_name(self, parent: Node, name: str) -> tuple[str, bool]:
        """Get PARENT/NAME ready to be created in the upper; True if it replaced a
        whiteout (a directory made there must be opaque, as the kernel makes it)."""
        self._require_writable()
        check_name(name)
        if wh.is_private_name(name):
            raise _err(errno.EINVAL)
        # The kernel looks the name up first; this guards a stale negative dentry. In a
        # directory of the upper layer alone the checks of the upper below suffice.
        if self.dir_layers(parent) != (0,) and self._find_child(parent, name) is not None:
            raise _err(errno.EEXIST)
        self.ensure_upper_dir(parent)
        rel = child_path(self.path(parent), name)
        st = self._upper_has(rel)
        replaced = False
        if st is not None:
            if not wh.is_whiteout_stat(st):
                raise _err(errno.EEXIST)
            self._upper_unlink(rel)
            replaced = True
        wh_rel = child_path(self.path(parent), wh.whiteout_file_name(name))
        if self._upper_has(wh_rel) is not None:
            self._upper_unlink(wh_rel)
            replaced = True
        return rel, replaced

    def owner_for(self, parent: Node, uid: int, gid: int) -> tuple[int, int]:
        """Owner of a new entry: the caller, with the group of a setgid parent."""
        with near(*self.backing(parent)) as (fd, rel):
            pst = os.stat(rel, dir_fd=fd)
        if pst.st_mode & stat.S_ISGID:
            gid = pst.st_gid
        return self.map_in(uid, gid)

    def _upper_unlink(self, rel: str) -> None:
        with near(self._fds[0], rel) as (fd, short):
            os.unlink(short, dir_fd=fd)

    def _new_node(self, parent: Node, name: str, rel: str,
                  st: os.stat_result | None = None) -> tuple[Node, os.stat_result]:
        """The node of the entry just made at REL (whose stat ST may be given)."""
        if st is None:
            st = lstat(self._fds[0], rel)
        old = self.nodes.by_identity((st.st_dev, st.st_ino))
        if old is not None:  # a recycled inode number of a deleted upper file
            self.nodes.unbind_all(old)
        node = self.nodes.new(stat.S_ISDIR(st.st_mode), 0, (st.st_dev, st.st_ino))
        node.names.append((parent, name))
        if node.is_dir:
            node.dir_layers = (0,)
        node.lookups += 1
        return node, st  # what stat_node says of a new upper entry: one layer, one name

    def mkdir(self, parent_ino: int, name: str, mode: int, uid: int, gid: int):
        parent = self.nodes.get(parent_ino)
        rel, hides_lower = self._prepare_name(parent, name)
        with near(self._fds[0], rel) as (fd, short):
            os.mkdir(short, stat.S_IMODE(mode), dir_fd=fd)
            os.chown(short, *self.owner_for(parent, uid, gid), dir_fd=fd,
                     follow_symlinks=False)
        if hides_lower:
            self._whiteouts.mark_opaque_at(self._fds[0], rel)
        return self._new_node(parent, name, rel)

    def mknod(self, parent_ino: int, name: str, mode: int, rdev: int, uid: int, gid: int):
        parent = self.nodes.get(parent_ino)
        rel, _ = self._prepare_name(parent, name)
        with near(self._fds[0], rel) as (fd, short):
            os.mknod(short, mode, rdev, dir_fd=fd)
            os.chown(short, *self.owner_for(parent, uid, gid), dir_fd=fd,
                     follow_symlinks=False)
        return self._new_node(parent, name, rel)

    def symlink(self, parent_ino: int, name: str, target: str, uid: int, gid: int):
        parent = self.nodes.get(parent_ino)
        rel, _ = self._prepare_name(parent, name)
        with near(self._fds[0], rel) as (fd, short):
            os.symlink(target, short, dir_fd=fd)
            os.chown(short, *self.owner_for(parent, uid, gid), dir_fd=fd,
                     follow_symlinks=False)
        return self._new_node(parent, name, rel)

    def create(self, parent_ino: int, name: str, mode: int, flags: int, uid: int, gid: int):
        parent = self.nodes.get(parent_ino)
        rel, _ = self._prepare_name(parent, name)
        with near(self._fds[0], rel) as (dir_fd, short):
            fd = os.open(short, self._open_flags(flags) | os.O_CREAT | os.O_EXCL,
                         stat.S_IMODE(mode), dir_fd=dir_fd)
        try:
            os.fchown(fd, *self.owner_for(parent, uid, gid))
            node, st = self._new_node(parent, name, rel, os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
        return self._add_handle(node, fd, 0, True, flags), node, st

    def link(self, ino: int, parent_ino: int, name: str):
        node = self.nodes.get(ino)
        parent = self.nodes.get(parent_ino)
        if node.is_dir:
            raise _err(errno.EPERM)
        self.copy_up(node)
        rel, _ = self._prepare_name(parent, name)
        src_fd, src_rel = (self._work_fd, self._index_name(node.origin)) if node.origin \
            else (self._fds[0], self.path(node))
        with near(src_fd, src_rel) as (src_fd, src_rel), \
                near(self._fds[0], rel) as (dst_fd, rel):
            os.link(src_rel, rel, src_dir_fd=src_fd, dst_dir_fd=dst_fd,
                    follow_symlinks=False)
        node.names.append((parent, name))
        node.lookups += 1
        return node, self.stat_node(node)

    def _remove_name(self, node: Node, parent: Node, name: str) -> None:
        try:
            node.names.remove((parent, name))
        except ValueError:
            pass

    def unlink(self, parent_ino: int, name: str) -> None:
        self._require_writable()
        check_name(name)
        parent = self.nodes.get(parent_ino)
        found = self._find_child(parent, name)
        if found is None:
            raise _err(errno.ENOENT)
        layer, st = found
        if stat.S_ISDIR(st.st_mode):
            raise _err(errno.EISDIR)
        node = self.nodes.by_identity((st.st_dev, st.st_ino))
        rel = child_path(self.path(parent), name)
        needs_whiteout = layer > 0 or self._lower_has(parent, name)
        self.ensure_upper_dir(parent)
        if layer == 0:
            self._upper_unlink(rel)
        elif node is not None and node.origin is not None:
            self._set_remaining(node.origin, self._index[node.origin] - 1)
        if needs_whiteout:
            self._whiteouts.make_whiteout(self._fds[0], rel)
        if node is not None:
            self._remove_name(node, parent, name)

    def rmdir(self, parent_ino: int, name: str) -> None:
        self._require_writable()
        check_name(name)
        parent = self.nodes.get(parent_ino)
        found = self._find_child(parent, name)
        if found is None:
            raise _err(errno.ENOENT)
        layer, st = found
        if not stat.S_ISDIR(st.st_mode):
            raise _err(errno.ENOTDIR)
        node = self._node_for(parent, name, layer, st)
        if self.list_dir(node):
            self.nodes.maybe_retire(node)
            raise _err(errno.ENOTEMPTY)
        rel = child_path(self.path(parent), name)
        needs_whiteout = layer > 0 or self._lower_has(parent, name)
        self.ensure_upper_dir(parent)
        if layer == 0:
            remove_entry(self._fds[0], rel)  # only whiteouts are left inside
        if needs_whiteout:
            self._whiteouts.make_whiteout(self._fds[0], rel)
        self._remove_name(node, parent, name)
        self.nodes.maybe_retire(node)

    rename = _rename

