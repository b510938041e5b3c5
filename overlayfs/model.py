"""The merged view of a union mount: lookups through layers, copy-up, whiteouts.

This is plain Python over directory file descriptors and ``*at`` calls; it knows
nothing of FUSE. :mod:`overlayfs.operations` adapts it to FUSE. Errors are raised
as ``OSError`` with the errno the caller should see.

Layers are numbered top first. With an upper directory, layer 0 is the upper and the
lowers follow; without one, layer 0 is the topmost lower and the mount is read-only.
Every path handed to a system call is relative to a layer's root fd, and walked down
(:func:`overlayfs.longpath.near`) where the tree is deeper than one call takes.

Semantics follow the kernel overlay (``../shared/spec/union-fs.md``):

* lookup takes the topmost layer that has the name; a whiteout (0:0 char device or
  ``.wh.NAME``) ends the search; a non-directory hides everything below; an opaque
  directory ends the merge of lower copies of that directory.
* a merged directory (one spanning several layers) reports ``st_nlink`` 1.
* the first change of a lower entry copies it up (parents first). Lower files with
  several hard links are copied up once into ``WORK/index`` and every later name is a
  hard link to that copy, so hard-link identity survives copy-up.
* deleting a lower entry leaves a whiteout and copies nothing up.
* renaming a directory that has lower parts copies up only the directory itself and
  records where it came from in a redirect xattr (``trusted.overlay.redirect``, or
  ``user.overlay.redirect``), as the kernel's ``redirect_dir=on`` does. A node's
  path is therefore per layer (:meth:`Union.layer_path`): below a redirect, lower
  layers are looked up at the redirect's path, in upper and lower layers alike.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat

from overlayfs import whiteout as wh
from overlayfs.config import MountConfig
from overlayfs.copyup import copy_entry, proc_path, remove_entry
from overlayfs.files import FilesAndMetadata, Handle
from overlayfs.longpath import lstat as _lstat, near
from overlayfs.names import NameChanges
from overlayfs.nodes import (ROOT_INODE, Node, NodeTable, at, check_name, child_path, node_path,
                             os_error as _err)

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_INDEX_DIR = "index"
_REMAINING_XATTR = "user.layerbox.remaining"


class Union(NameChanges, FilesAndMetadata):
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
        devs = {os.fstat(fd).st_dev for fd in self._fds + [self._work_fd] if fd >= 0}
        self.nodes = NodeTable(devs.pop() if len(devs) == 1 else None)
        st = os.stat(".", dir_fd=self._fds[0])
        self.root = self.nodes.add_root(0, (st.st_dev, st.st_ino))
        self._handles: dict[int, Handle] = {}
        self._next_fh = 1
        #: origin (st_dev, st_ino) of a hard-linked lower file → lower names not yet
        #: copied up or deleted (to report the right st_nlink).
        self._index: dict[tuple[int, int], int] = {}
        #: (st_dev, st_ino) of an index file (shared by its upper names) → its origin.
        self._index_files: dict[tuple[int, int], tuple[int, int]] = {}
        #: Set once any redirect was seen or written: until then every layer holds
        #: every node at its merged path and layer_path() is just path().
        self._redirects = False
        if self.has_upper and self._work_fd >= 0:
            self._prepare_work_dir()

    def close(self) -> None:
        for handle in self._handles.values():
            os.close(handle.fd)
        self._handles.clear()
        for fd in self._fds + ([self._work_fd] if self._work_fd >= 0 else []):
            os.close(fd)
        self._fds.clear()
        self._work_fd = -1

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
                    st = os.stat(name, dir_fd=index_fd, follow_symlinks=False)
                except (ValueError, OSError):
                    continue
                self._index[(dev, ino)] = int(value)
                self._index_files[(st.st_dev, st.st_ino)] = (dev, ino)
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

    def layer_path(self, node: Node, layer: int) -> str:
        """NODE's path inside LAYER (differs from path() below a redirected directory)."""
        if layer == 0 or not self._redirects:
            return node_path(node)
        parts: list[str] = []
        base = ""
        while node.names:
            if node.is_dir:
                self.dir_layers(node)
                if node.lower_paths is not None and layer in node.lower_paths:
                    base = node.lower_paths[layer]
                    break
            parent, name = node.names[0]
            parts.append(name)
            node = parent
        else:
            if node.ino != ROOT_INODE:
                raise FileNotFoundError("node is unlinked")
        parts.reverse()
        return "/".join(([base] if base else []) + parts)

    def child_layer_path(self, parent: Node, name: str, layer: int) -> str:
        return child_path(self.layer_path(parent, layer), name)

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
                layers, paths = self._merge_below(parent, name, node.layer)
                node.lower_paths = paths
            node.dir_layers = tuple(layers)
            node.merged_dir = len(layers) > 1
        return node.dir_layers

    def _merge_below(self, parent: Node, name: str,
                     top: int) -> tuple[list[int], dict[int, str] | None]:
        """Layers of directory PARENT/NAME from layer TOP down to the first opaque one,
        and the directory's path in each of them if a redirect moved it (else None).

        Like the kernel's lookup: a redirect on a layer's copy names where the layers
        below hold it, an absolute one from the layer root (then every layer below
        is searched, not only the parent's), a relative one in the parent.
        """
        layers = [top]
        parent_layers = self.dir_layers(parent)
        stack = parent_layers[parent_layers.index(top) + 1:]
        rel = self.child_layer_path(parent, name, top)
        paths = {top: rel}
        moved = False
        absolute: str | None = None  # the path to look up once an absolute redirect is met
        last = len(self._fds) - 1
        position = 0
        current = top
        while True:
            if current == last:
                break
            redirect = wh.redirect_at(self._fds[current], rel)
            current_rel = rel
            if redirect is not None and (target := _redirect_target(redirect)) is not None:
                self._redirects = moved = True
                if redirect.startswith("/"):
                    absolute = target
                    root_layers = self.dir_layers(self.root)
                    stack = tuple(layer for layer in root_layers if layer > current)
                    position = 0
                elif absolute is not None:
                    absolute = child_path(absolute.rpartition("/")[0], target)
                else:
                    name = target
            found = None
            while position < len(stack):
                index = stack[position]
                position += 1
                rel = absolute if absolute is not None else \
                    self.child_layer_path(parent, name, index)
                found = self._lstat_in(index, rel, position == len(stack))
                paths[index] = rel  # also where absent: a new redirect must name it
                if found is not None:
                    break
            if found is None or found is False or not stat.S_ISDIR(found.st_mode):
                break  # a whiteout or a non-directory hides everything below
            if wh.is_opaque_at(self._fds[current], current_rel):
                break
            layers.append(index)
            current = index
        return layers, (paths if moved else None)

    def _lstat_in(self, layer: int, rel: str, last: bool = False):
        """The entry at REL in LAYER: its stat, False for a whiteout, None if absent.
        With LAST (no layer below to hide), an absent entry is None unexamined."""
        fd = self._fds[layer]
        try:
            st = _lstat(fd, rel)
        except (FileNotFoundError, NotADirectoryError):
            if last:
                return None
            try:
                head, _, tail = rel.rpartition("/")
                _lstat(fd, child_path(head, wh.whiteout_file_name(tail)))
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
        layers = self.dir_layers(parent)
        bottom = layers[-1]
        for layer in layers:
            rel = self.child_layer_path(parent, name, layer)
            found = self._lstat_in(layer, rel, layer == bottom)
            if found is None:
                continue
            if found is False:
                return None
            return layer, found
        return None

    def _node_for(self, parent: Node, name: str, layer: int, st: os.stat_result) -> Node:
        """The node for a visible entry, creating it on first sight (no lookup count)."""
        key = backing = (st.st_dev, st.st_ino)
        if layer == 0 and st.st_nlink > 1:
            # An upper name of an indexed hard link (copied up in an earlier mount): the
            # same inode as the lower names still reaching it through the index.
            key = self._index_files.get(key, key)
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
            if not is_dir and st.st_nlink > 1 and key in self._index:
                node.origin = key
                node.layer = 0
        if backing != key and self.nodes.by_identity(backing) is None:
            self.nodes.bind(node, backing)  # unlink/rename find nodes by what they stat
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
        return self._fds[node.layer], at(self.layer_path(node, node.layer))

    def stat_node(self, node: Node) -> os.stat_result:
        if not node.names and node.ino != ROOT_INODE:
            return self._stat_unlinked(node)
        st = _lstat(*self.backing(node))
        if node.is_dir:
            if self.config.static_nlink:  # fuse-overlayfs' option: no counting of subdirs
                return _with_nlink(st, 1)
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
        for layer in self.dir_layers(node):
            rel = at(self.layer_path(node, layer))
            hidden_here: set[str] = set()
            with near(self._fds[layer], rel) as (layer_fd, short):
                fd = os.open(short, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=layer_fd)
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
                    in_several_layers: bool = True,
                    parent_path: str | None = None) -> tuple[Node, os.stat_result]:
        """Node and attributes of a listed entry (for readdirplus; no lookup count).
        PARENT_PATH is ``layer_path(parent, layer)`` if the caller has it (a listing
        asks for every entry of one directory: the path is built once, not per entry)."""
        if parent_path is None:
            parent_path = self.layer_path(parent, layer)
        rel = child_path(parent_path, name)
        st = _lstat(self._fds[layer], rel)
        node = self._node_for(parent, name, layer, st)
        if node.layer != layer or node.origin is not None:
            return node, self.stat_node(node)
        if node.is_dir:
            if node.dir_layers is None and not in_several_layers and (
                    layer == len(self._fds) - 1 or wh.redirect_at(self._fds[layer], rel) is None):
                node.dir_layers = (layer,)
            self.dir_layers(node)
            if node.merged_dir:
                return node, _with_nlink(st, 1)
        return node, st

    # ------------------------------------------------------------------ copy-up
    def _upper_has(self, rel: str) -> os.stat_result | None:
        try:
            return _lstat(self._fds[0], rel)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:  # ".wh." + a name near NAME_MAX
                return None
            raise

    def ensure_upper_dir(self, node: Node) -> None:
        """Copy directory NODE (and its parents) up, if it is not in the upper yet."""
        if node.layer == 0:
            return
        self._require_writable()
        parent, name = node.names[0]
        self.ensure_upper_dir(parent)
        layers = self.dir_layers(node)
        rel = self.path(node)
        lower_rel = self.layer_path(node, node.layer)
        st = _lstat(self._fds[node.layer], lower_rel)
        tmp = copy_entry(self._fds[node.layer], lower_rel, st, self._work_fd)
        with self._parent_times_kept(parent):
            self._into_upper(tmp, rel)
        node.layer = 0
        node.dir_layers = (0,) + layers
        node.merged_dir = True
        up = _lstat(self._fds[0], rel)
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
        if node.layer == 0 and node.origin is None:
            return
        parent, name = name_ref or node.names[0]
        rel = child_path(self.path(parent), name)
        if node.layer == 0:
            if node.origin is not None and self._upper_has(rel) is None:
                self.ensure_upper_dir(parent)
                with self._parent_times_kept(parent), near(self._fds[0], rel) as (fd, short):
                    os.link(self._index_name(node.origin), short, src_dir_fd=self._work_fd,
                            dst_dir_fd=fd, follow_symlinks=False)
                self._set_remaining(node.origin, self._index[node.origin] - 1)
            return
        self.ensure_upper_dir(parent)
        lower_rel = self.child_layer_path(parent, name, node.layer)
        st = _lstat(self._fds[node.layer], lower_rel)
        tmp = copy_entry(self._fds[node.layer], lower_rel, st, self._work_fd,
                         with_data=with_data)
        if st.st_nlink > 1 and stat.S_ISREG(st.st_mode):
            origin = (st.st_dev, st.st_ino)
            os.link(tmp, self._index_name(origin), src_dir_fd=self._work_fd,
                    dst_dir_fd=self._work_fd)
            self._set_remaining(origin, st.st_nlink - 1)
            copied = os.stat(tmp, dir_fd=self._work_fd, follow_symlinks=False)
            self._index_files[(copied.st_dev, copied.st_ino)] = origin
            node.origin = origin
        with self._parent_times_kept(parent):
            self._into_upper(tmp, rel)
        node.layer = 0
        up = _lstat(self._fds[0], rel)
        self.nodes.bind(node, (up.st_dev, up.st_ino))

    @contextlib.contextmanager
    def _parent_times_kept(self, parent: Node):
        """Copy-up is not a change of the parent: like the kernel overlay, put the upper
        parent's atime/mtime back after linking the copy into it (else every copy-up
        would show its parent as changed in ``diff``)."""
        parent_rel = at(self.path(parent))
        before = _lstat(self._fds[0], parent_rel)
        yield
        with near(self._fds[0], parent_rel) as (fd, short):
            os.utime(short, ns=(before.st_atime_ns, before.st_mtime_ns), dir_fd=fd,
                     follow_symlinks=False)

    def _into_upper(self, tmp: str, rel: str) -> None:
        """Rename a finished copy from the work dir to REL in the upper layer."""
        with near(self._fds[0], rel) as (fd, short):
            os.rename(tmp, short, src_dir_fd=self._work_fd, dst_dir_fd=fd)


def _redirect_target(redirect: str) -> str | None:
    """A redirect as a layer-relative path (or a name), None if it is malformed."""
    parts = redirect.strip("/").split("/")
    if not parts or any(part in ("", ".", "..") for part in parts):
        return None
    if not redirect.startswith("/") and len(parts) > 1:
        return None
    return "/".join(parts)


def _with_nlink(st: os.stat_result, nlink: int) -> os.stat_result:
    values = list(st)
    values[stat.ST_NLINK] = nlink
    return os.stat_result(values, {name: getattr(st, name) for name in
                                   ("st_atime", "st_mtime", "st_ctime",
                                    "st_atime_ns", "st_mtime_ns", "st_ctime_ns",
                                    "st_blksize", "st_blocks", "st_rdev")})

