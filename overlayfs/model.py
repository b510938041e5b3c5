"""The merged view of a union mount: lookups through layers, copy-up, whiteouts.

This is plain Python over directory file descriptors and ``*at`` calls; it knows
nothing of FUSE. :mod:`overlayfs.operations` adapts it to pyfuse3. Errors are raised
as ``OSError`` with the errno the caller should see.

Layers are numbered top first. With an upper directory, layer 0 is the upper and the
lowers follow; without one, layer 0 is the topmost lower and the mount is read-only.
Every path handed to a system call is relative to a layer's root fd, so paths stay
short even deep inside the tree.

Semantics follow the kernel overlay (``../shared/spec/union-fs.md``):

* lookup takes the topmost layer that has the name; a whiteout (0:0 char device or
  ``.wh.NAME``) ends the search; a non-directory hides everything below; an opaque
  directory ends the merge of lower copies of that directory.
* a merged directory (one spanning several layers) reports ``st_nlink`` 1.
* the first change of a lower entry copies it up (parents first). Lower files with
  several hard links are copied up once into ``WORK/index`` and every later name is a
  hard link to that copy, so hard-link identity survives copy-up.
* deleting a lower entry leaves a whiteout and copies nothing up.
* renaming a directory that has lower parts copies its whole tree up and makes it
  opaque (what ``mv`` does after the kernel's EXDEV), so the upper directory alone
  describes the result and ``diff``/``commit`` need no redirect support.
"""

from __future__ import annotations

import errno
import logging
import os
import stat

from overlayfs import whiteout as wh
from overlayfs.config import MountConfig
from overlayfs.copyup import copy_entry, proc_path, remove_entry, temp_name
from overlayfs.nodes import ROOT_INODE, Node, NodeTable, at, child_path, node_path

log = logging.getLogger(__name__)

NAME_MAX = 255
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_INDEX_DIR = "index"
_REMAINING_XATTR = "user.layerbox.remaining"


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def check_name(name: str) -> None:
    if len(os.fsencode(name)) > NAME_MAX:
        raise _err(errno.ENAMETOOLONG)


class Handle:
    """An open file: the node, the backing fd and the layer it was opened in."""

    __slots__ = ("node", "fd", "layer", "writable", "flags")

    def __init__(self, node: Node, fd: int, layer: int, writable: bool, flags: int):
        self.node = node
        self.fd = fd
        self.layer = layer
        self.writable = writable
        self.flags = flags


class Union:
    def __init__(self, config: MountConfig):
        self.config = config
        self.writable = config.upper is not None and not config.read_only
        self._fds: list[int] = []
        paths = ([config.upper] if config.upper else []) + list(config.lowers)
        for path in paths:
            self._fds.append(os.open(path, _DIR_FLAGS))
        self.has_upper = config.upper is not None
        self._work_fd = os.open(config.work, _DIR_FLAGS) if config.work else -1
        self._whiteouts = wh.WhiteoutWriter()
        self.nodes = NodeTable()
        st = os.stat(".", dir_fd=self._fds[0])
        self.root = self.nodes.add_root(0, (st.st_dev, st.st_ino))
        self._handles: dict[int, Handle] = {}
        self._next_fh = 1
        #: origin (st_dev, st_ino) of a hard-linked lower file → lower names not yet
        #: copied up or deleted (to report the right st_nlink).
        self._index: dict[tuple[int, int], int] = {}
        if self.has_upper and self._work_fd >= 0:
            self._prepare_work_dir()

    def close(self) -> None:
        for handle in self._handles.values():
            os.close(handle.fd)
        self._handles.clear()
        for fd in self._fds + ([self._work_fd] if self._work_fd >= 0 else []):
            os.close(fd)
        self._fds.clear()

    # ------------------------------------------------------------------ layout
    def _prepare_work_dir(self) -> None:
        """Remove staging leftovers of an earlier mount; keep and load the index."""
        for name in os.listdir(self._work_fd):
            if name != _INDEX_DIR:
                remove_entry(self._work_fd, name)
        try:
            os.mkdir(_INDEX_DIR, 0o700, dir_fd=self._work_fd)
        except FileExistsError:
            pass
        index_fd = os.open(_INDEX_DIR, _DIR_FLAGS, dir_fd=self._work_fd)
        try:
            for name in os.listdir(index_fd):
                try:
                    dev, ino = (int(part, 16) for part in name.split("-"))
                    value = os.getxattr(proc_path(index_fd, name), _REMAINING_XATTR)
                except (ValueError, OSError):
                    continue
                self._index[(dev, ino)] = int(value)
        finally:
            os.close(index_fd)

    @staticmethod
    def _index_name(origin: tuple[int, int]) -> str:
        return f"{_INDEX_DIR}/{origin[0]:x}-{origin[1]:x}"

    def _set_remaining(self, origin: tuple[int, int], remaining: int) -> None:
        self._index[origin] = max(remaining, 0)
        os.setxattr(proc_path(self._work_fd, self._index_name(origin)), _REMAINING_XATTR,
                    str(self._index[origin]).encode())

    def _require_writable(self) -> None:
        if not self.writable:
            raise _err(errno.EROFS)

    # -------------------------------------------------------------- resolution
    def path(self, node: Node) -> str:
        return node_path(node)

    def dir_layers(self, node: Node) -> tuple[int, ...]:
        """The layers merged into directory NODE, topmost first (computed once)."""
        if node.dir_layers is None:
            if node.ino == ROOT_INODE:
                layers: list[int] = [0]
                for index in range(1, len(self._fds)):
                    if wh.is_opaque_fd(self._fds[layers[-1]]) and layers[-1] != 0:
                        break
                    layers.append(index)
            else:
                parent, name = node.names[0]
                layers = self._merge_below(parent, name, node.layer)
            node.dir_layers = tuple(layers)
            node.merged_dir = len(layers) > 1
        return node.dir_layers

    def _merge_below(self, parent: Node, name: str, top: int) -> list[int]:
        """Layers of directory PARENT/NAME from layer TOP down to the first opaque one."""
        layers = [top]
        parent_layers = self.dir_layers(parent)
        rel = child_path(self.path(parent), name)
        for index in parent_layers[parent_layers.index(top) + 1:]:
            found = self._lstat_in(index, rel, parent, name)
            if found is None:
                continue
            if found is False or not stat.S_ISDIR(found.st_mode):
                break  # a whiteout or a non-directory hides everything below
            if wh.is_opaque_at(self._fds[layers[-1]], rel):
                break
            layers.append(index)
        return layers

    def _lstat_in(self, layer: int, rel: str, parent: Node, name: str):
        """The entry at REL in LAYER: its stat, False for a whiteout, None if absent."""
        fd = self._fds[layer]
        try:
            st = os.stat(rel, dir_fd=fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            try:
                os.stat(child_path(self.path(parent), wh.whiteout_file_name(name)),
                        dir_fd=fd, follow_symlinks=False)
            except OSError:
                return None
            return False
        if wh.is_whiteout_stat(st):
            return False
        return st

    def _find_child(self, parent: Node, name: str):
        """(layer, stat) of the visible entry PARENT/NAME, or None."""
        if wh.is_private_name(name):
            return None
        rel = child_path(self.path(parent), name)
        for layer in self.dir_layers(parent):
            found = self._lstat_in(layer, rel, parent, name)
            if found is None:
                continue
            if found is False:
                return None
            return layer, found
        return None

    def _node_for(self, parent: Node, name: str, layer: int, st: os.stat_result) -> Node:
        """The node for a visible entry, creating it on first sight (no lookup count)."""
        key = (st.st_dev, st.st_ino)
        node = self.nodes.by_identity(key)
        if node is not None and (parent, name) not in node.names:
            if node.is_dir and node.names:
                node = None  # a directory has one name: this is a different one
            else:
                node.names.append((parent, name))
        if node is None:
            is_dir = stat.S_ISDIR(st.st_mode)
            node = self.nodes.new(is_dir, layer, key)
            node.names.append((parent, name))
            if not is_dir and layer > 0 and st.st_nlink > 1 and key in self._index:
                node.origin = key
                node.layer = 0
        return node

    def lookup(self, parent_ino: int, name: str) -> tuple[Node, os.stat_result] | None:
        """Resolve and count a lookup; None for a missing name."""
        check_name(name)
        parent = self.nodes.get(parent_ino)
        if name == ".":
            node = parent
        elif name == "..":
            node = parent.names[0][0] if parent.names else parent
        else:
            found = self._find_child(parent, name)
            if found is None:
                return None
            node = self._node_for(parent, name, *found)
        st = self.stat_node(node)
        node.lookups += 1
        return node, st

    def forget(self, ino: int, count: int) -> None:
        node = self.nodes.find(ino)
        if node is None:
            return
        node.lookups -= count
        self.nodes.maybe_retire(node)

    # ---------------------------------------------------------------- attributes
    def backing(self, node: Node) -> tuple[int, str]:
        """(dir fd, relative path) of the file that holds NODE's data and metadata."""
        if node.origin is not None:
            return self._work_fd, self._index_name(node.origin)
        return self._fds[node.layer], at(self.path(node))

    def stat_node(self, node: Node) -> os.stat_result:
        if not node.names and node.ino != ROOT_INODE:
            return self._stat_unlinked(node)
        fd, rel = self.backing(node)
        st = os.stat(rel, dir_fd=fd, follow_symlinks=False)
        if node.is_dir:
            self.dir_layers(node)
            if node.merged_dir:
                return _with_nlink(st, 1)
        elif node.origin is not None:
            return _with_nlink(st, st.st_nlink - 1 + self._index.get(node.origin, 0))
        return st

    def _stat_unlinked(self, node: Node) -> os.stat_result:
        for handle in self._handles.values():
            if handle.node is node:
                return _with_nlink(os.fstat(handle.fd), 0)
        raise _err(errno.ENOENT)

    def getattr(self, ino: int) -> tuple[Node, os.stat_result]:
        node = self.nodes.get(ino)
        return node, self.stat_node(node)

    # ----------------------------------------------------------------- listing
    def list_dir(self, node: Node) -> list[tuple[str, int, bool]]:
        """Visible entries of a merged directory, sorted by name.

        Each is (name, topmost layer, seen in more than one layer); the last lets
        readdir skip the per-directory layer merge for directories of one layer.
        """
        seen: dict[str, int] = {}
        multi: set[str] = set()
        hidden: set[str] = set()
        rel = at(self.path(node))
        for layer in self.dir_layers(node):
            hidden_here: set[str] = set()
            fd = os.open(rel, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=self._fds[layer])
            try:
                with os.scandir(fd) as entries:
                    for entry in entries:
                        name = entry.name
                        if name.startswith(wh.WHITEOUT_PREFIX):
                            target = wh.whiteout_target(name)
                            if target:
                                hidden_here.add(target)
                            continue
                        if name in hidden:
                            continue
                        if name in seen:
                            multi.add(name)
                            continue
                        if not (entry.is_dir(follow_symlinks=False)
                                or entry.is_file(follow_symlinks=False)
                                or entry.is_symlink()) and wh.is_whiteout_stat(
                                    entry.stat(follow_symlinks=False)):
                            hidden_here.add(name)
                            continue
                        seen[name] = layer
            finally:
                os.close(fd)
            hidden |= hidden_here
        return sorted((name, layer, name in multi) for name, layer in seen.items())

    def child_entry(self, parent: Node, name: str, layer: int,
                    in_several_layers: bool = True) -> tuple[Node, os.stat_result]:
        """Node and attributes of a listed entry (for readdirplus; no lookup count)."""
        rel = child_path(self.path(parent), name)
        st = os.stat(rel, dir_fd=self._fds[layer], follow_symlinks=False)
        node = self._node_for(parent, name, layer, st)
        if node.layer != layer or node.origin is not None:
            return node, self.stat_node(node)
        if node.is_dir:
            if node.dir_layers is None and not in_several_layers:
                node.dir_layers = (layer,)
            self.dir_layers(node)
            if node.merged_dir:
                return node, _with_nlink(st, 1)
        return node, st

    # ------------------------------------------------------------------ copy-up
    def _upper_has(self, rel: str) -> os.stat_result | None:
        try:
            return os.stat(rel, dir_fd=self._fds[0], follow_symlinks=False)
        except FileNotFoundError:
            return None

    def ensure_upper_dir(self, node: Node) -> None:
        """Copy directory NODE (and its parents) up, if it is not in the upper yet."""
        if node.layer == 0:
            return
        self._require_writable()
        parent, name = node.names[0]
        self.ensure_upper_dir(parent)
        layers = self.dir_layers(node)
        rel = self.path(node)
        st = os.stat(rel, dir_fd=self._fds[node.layer], follow_symlinks=False)
        tmp = copy_entry(self._fds[node.layer], rel, st, self._work_fd)
        os.rename(tmp, rel, src_dir_fd=self._work_fd, dst_dir_fd=self._fds[0])
        node.layer = 0
        node.dir_layers = (0,) + layers
        node.merged_dir = True
        up = os.stat(rel, dir_fd=self._fds[0], follow_symlinks=False)
        self.nodes.bind(node, (up.st_dev, up.st_ino))

    def copy_up(self, node: Node, name_ref: tuple[Node, str] | None = None,
                *, with_data: bool = True) -> None:
        """Make NODE (reached through NAME_REF, default its first name) live in the upper."""
        self._require_writable()
        if node.is_dir:
            self.ensure_upper_dir(node)
            return
        if not node.names:
            raise _err(errno.ENOENT)
        parent, name = name_ref or node.names[0]
        rel = child_path(self.path(parent), name)
        if node.layer == 0:
            if node.origin is not None and self._upper_has(rel) is None:
                self.ensure_upper_dir(parent)
                os.link(self._index_name(node.origin), rel, src_dir_fd=self._work_fd,
                        dst_dir_fd=self._fds[0], follow_symlinks=False)
                self._set_remaining(node.origin, self._index[node.origin] - 1)
            return
        self.ensure_upper_dir(parent)
        st = os.stat(rel, dir_fd=self._fds[node.layer], follow_symlinks=False)
        tmp = copy_entry(self._fds[node.layer], rel, st, self._work_fd, with_data=with_data)
        if st.st_nlink > 1 and stat.S_ISREG(st.st_mode):
            origin = (st.st_dev, st.st_ino)
            os.link(tmp, self._index_name(origin), src_dir_fd=self._work_fd,
                    dst_dir_fd=self._work_fd)
            self._set_remaining(origin, st.st_nlink - 1)
            node.origin = origin
        os.rename(tmp, rel, src_dir_fd=self._work_fd, dst_dir_fd=self._fds[0])
        node.layer = 0
        up = os.stat(rel, dir_fd=self._fds[0], follow_symlinks=False)
        self.nodes.bind(node, (up.st_dev, up.st_ino))

    def _materialize(self, node: Node) -> None:
        """Copy a directory's whole merged tree into the upper and make it opaque."""
        self.ensure_upper_dir(node)
        self._materialize_children(node)
        rel = self.path(node)
        _drop_whiteouts(self._fds[0], rel)  # meaningless below an opaque directory
        self._whiteouts.mark_opaque_at(self._fds[0], rel)
        node.dir_layers = (0,)
        node.merged_dir = False
        self._refresh_below(node)

    def _materialize_children(self, node: Node) -> None:
        for name, layer, several in self.list_dir(node):
            child, _ = self.child_entry(node, name, layer, several)
            if child.is_dir:
                self.ensure_upper_dir(child)
                if len(self.dir_layers(child)) > 1:
                    self._materialize_children(child)
            else:
                self.copy_up(child, (node, name))
            self.nodes.maybe_retire(child)

    def _refresh_below(self, top: Node) -> None:
        """Forget cached layer facts of nodes under TOP after its tree moved up."""
        for node in list(self.nodes):
            if node is top or not node.names:
                continue
            ancestor = node.names[0][0]
            while ancestor.names and ancestor is not top:
                ancestor = ancestor.names[0][0]
            if ancestor is top:
                if node.is_dir:
                    node.dir_layers = None
                    node.merged_dir = False

    # ------------------------------------------------------------ name changes
    def _lower_has(self, parent: Node, name: str) -> bool:
        """True if a layer below the upper shows an entry at PARENT/NAME."""
        rel = child_path(self.path(parent), name)
        for layer in self.dir_layers(parent):
            if layer == 0:
                continue
            found = self._lstat_in(layer, rel, parent, name)
            if found is None:
                continue
            return found is not False
        return False

    def _prepare_name(self, parent: Node, name: str) -> tuple[str, bool]:
        """Get PARENT/NAME ready to be created in the upper; True if it hid a lower entry."""
        self._require_writable()
        check_name(name)
        if wh.is_private_name(name):
            raise _err(errno.EINVAL)
        self.ensure_upper_dir(parent)
        rel = child_path(self.path(parent), name)
        st = self._upper_has(rel)
        replaced = False
        if st is not None:
            if not wh.is_whiteout_stat(st):
                raise _err(errno.EEXIST)
            os.unlink(rel, dir_fd=self._fds[0])
            replaced = True
        wh_rel = child_path(self.path(parent), wh.whiteout_file_name(name))
        if self._upper_has(wh_rel) is not None:
            os.unlink(wh_rel, dir_fd=self._fds[0])
            replaced = True
        return rel, replaced or self._lower_has(parent, name)

    def owner_for(self, parent: Node, uid: int, gid: int) -> tuple[int, int]:
        """Owner of a new entry: the caller, with the group of a setgid parent."""
        fd, rel = self.backing(parent)
        pst = os.stat(rel, dir_fd=fd)
        if pst.st_mode & stat.S_ISGID:
            gid = pst.st_gid
        return self.map_in(uid, gid)

    def _new_node(self, parent: Node, name: str, rel: str) -> tuple[Node, os.stat_result]:
        st = os.stat(rel, dir_fd=self._fds[0], follow_symlinks=False)
        old = self.nodes.by_identity((st.st_dev, st.st_ino))
        if old is not None:  # a recycled inode number of a deleted upper file
            self.nodes.unbind_all(old)
        node = self.nodes.new(stat.S_ISDIR(st.st_mode), 0, (st.st_dev, st.st_ino))
        node.names.append((parent, name))
        if node.is_dir:
            node.dir_layers = (0,)
        node.lookups += 1
        return node, self.stat_node(node)

    def mkdir(self, parent_ino: int, name: str, mode: int, uid: int, gid: int):
        parent = self.nodes.get(parent_ino)
        rel, hides_lower = self._prepare_name(parent, name)
        os.mkdir(rel, stat.S_IMODE(mode), dir_fd=self._fds[0])
        os.chown(rel, *self.owner_for(parent, uid, gid), dir_fd=self._fds[0],
                 follow_symlinks=False)
        if hides_lower:
            self._whiteouts.mark_opaque_at(self._fds[0], rel)
        return self._new_node(parent, name, rel)

    def mknod(self, parent_ino: int, name: str, mode: int, rdev: int, uid: int, gid: int):
        parent = self.nodes.get(parent_ino)
        rel, _ = self._prepare_name(parent, name)
        os.mknod(rel, mode, rdev, dir_fd=self._fds[0])
        os.chown(rel, *self.owner_for(parent, uid, gid), dir_fd=self._fds[0],
                 follow_symlinks=False)
        return self._new_node(parent, name, rel)

    def symlink(self, parent_ino: int, name: str, target: str, uid: int, gid: int):
        parent = self.nodes.get(parent_ino)
        rel, _ = self._prepare_name(parent, name)
        os.symlink(target, rel, dir_fd=self._fds[0])
        os.chown(rel, *self.owner_for(parent, uid, gid), dir_fd=self._fds[0],
                 follow_symlinks=False)
        return self._new_node(parent, name, rel)

    def create(self, parent_ino: int, name: str, mode: int, flags: int, uid: int, gid: int):
        parent = self.nodes.get(parent_ino)
        rel, _ = self._prepare_name(parent, name)
        fd = os.open(rel, self._open_flags(flags) | os.O_CREAT | os.O_EXCL,
                     stat.S_IMODE(mode), dir_fd=self._fds[0])
        try:
            os.fchown(fd, *self.owner_for(parent, uid, gid))
            node, st = self._new_node(parent, name, rel)
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
        os.link(src_rel, rel, src_dir_fd=src_fd, dst_dir_fd=self._fds[0],
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
            os.unlink(rel, dir_fd=self._fds[0])
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

    # imported late to keep this module's size in check
    from overlayfs.rename import rename  # noqa: E402  (a method)

    # ------------------------------------------------------------- metadata
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
        if node.names:
            self.copy_up(node, with_data=not (size == 0 and mode is None and uid is None
                                              and gid is None and atime_ns is None
                                              and mtime_ns is None))
        elif handle is None or handle.layer != 0:
            raise _err(errno.ENOENT)
        fd, rel = self.backing(node) if node.names else (None, None)
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
        return node, self.stat_node(node)

    def readlink(self, ino: int) -> str:
        fd, rel = self.backing(self.nodes.get(ino))
        return os.readlink(rel, dir_fd=fd)

    def _xattr_path(self, node: Node) -> str:
        fd, rel = self.backing(node)
        return proc_path(fd, rel)

    def getxattr(self, ino: int, name: str) -> bytes:
        if wh.is_private_xattr(name) or not self.config.xattrs:
            raise _err(errno.ENODATA)
        return os.getxattr(self._xattr_path(self.nodes.get(ino)), name, follow_symlinks=False)

    def listxattr(self, ino: int) -> list[str]:
        if not self.config.xattrs:
            return []
        names = os.listxattr(self._xattr_path(self.nodes.get(ino)), follow_symlinks=False)
        return [n for n in names if not wh.is_private_xattr(n)]

    def setxattr(self, ino: int, name: str, value: bytes) -> None:
        if not self.config.xattrs:
            raise _err(errno.ENOTSUP)
        if wh.is_private_xattr(name):
            raise _err(errno.EPERM)
        node = self.nodes.get(ino)
        self.copy_up(node)
        os.setxattr(self._xattr_path(node), name, value, follow_symlinks=False)

    def removexattr(self, ino: int, name: str) -> None:
        if wh.is_private_xattr(name) or not self.config.xattrs:
            raise _err(errno.ENODATA)
        node = self.nodes.get(ino)
        self.copy_up(node)
        os.removexattr(self._xattr_path(node), name, follow_symlinks=False)

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
        fd, rel = self.backing(node)
        real_flags = self._open_flags(flags) if writable else \
            (flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_APPEND)) | os.O_CLOEXEC
        handle_fd = os.open(rel, real_flags, dir_fd=fd)
        if flags & os.O_TRUNC:
            os.ftruncate(handle_fd, 0)
        return self._add_handle(node, handle_fd, node.layer, writable, flags)

    def handle(self, fh: int) -> Handle:
        handle = self._handles[fh]
        if handle.layer != 0 and handle.node.layer == 0 and handle.node.names:
            # Copied up since it was opened: read the new copy, as the kernel overlay does.
            fd, rel = self.backing(handle.node)
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


def _drop_whiteouts(dir_fd: int, rel: str) -> None:
    fd = os.open(rel, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    _drop_whiteouts(fd, entry.name)
                elif wh.whiteout_target(entry.name) or (
                        not entry.is_file(follow_symlinks=False)
                        and not entry.is_symlink()
                        and wh.is_whiteout_stat(entry.stat(follow_symlinks=False))):
                    os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)


def _with_nlink(st: os.stat_result, nlink: int) -> os.stat_result:
    values = list(st)
    values[stat.ST_NLINK] = nlink
    return os.stat_result(values, {name: getattr(st, name) for name in
                                   ("st_atime", "st_mtime", "st_ctime",
                                    "st_atime_ns", "st_mtime_ns", "st_ctime_ns",
                                    "st_blksize", "st_blocks", "st_rdev")})


def _map_id(value: int, mappings, *, reverse: bool) -> int:
    if not mappings or value == -1:
        return value
    for shown, stored, length in mappings:
        src, dst = (stored, shown) if reverse else (shown, stored)
        if src <= value < src + length:
            return dst + (value - src)
    return 65534
