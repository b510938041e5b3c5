"""rename(2) on the merged view, as a method of :class:`overlayfs.model.Union`.

Kept apart from the model because it is the one operation that touches two names,
two parents and possibly two directory trees at once. A directory with lower parts
moves the kernel's ``redirect_dir=on`` way: only the directory itself is copied up,
and a redirect xattr on it names its path in the lower layers (its children stay
where they are); the old name gets a whiteout when a lower layer still shows
something there.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

from overlayfs import whiteout as wh
from overlayfs.copyup import remove_entry
from overlayfs.longpath import near
from overlayfs.nodes import check_name, child_path

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2

# The process's own symbols (libc is linked in): find_library("c") would fork
# `ldconfig -p` at every mount program start.
_libc = ctypes.CDLL(None, use_errno=True)


def renameat2(src_fd: int, src: str, dst_fd: int, dst: str, flags: int) -> None:
    with near(src_fd, src) as (src_fd, src), near(dst_fd, dst) as (dst_fd, dst):
        if _libc.renameat2(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), flags) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def rename(self, old_parent_ino: int, old_name: str, new_parent_ino: int, new_name: str,
           flags: int = 0) -> None:
    self._require_writable()
    check_name(old_name)
    check_name(new_name)
    if wh.is_private_name(new_name):
        raise _err(errno.EINVAL)
    old_parent = self.nodes.get(old_parent_ino)
    new_parent = self.nodes.get(new_parent_ino)
    src = self._find_child(old_parent, old_name)
    if src is None:
        raise _err(errno.ENOENT)
    dst = self._find_child(new_parent, new_name)
    if flags & RENAME_NOREPLACE and dst is not None:
        raise _err(errno.EEXIST)
    if flags & RENAME_EXCHANGE and dst is None:
        raise _err(errno.ENOENT)
    src_node = self._node_for(old_parent, old_name, *src)
    dst_node = self._node_for(new_parent, new_name, *dst) if dst else None
    if src_node is dst_node:
        return  # two names of one file: POSIX says do nothing
    src_is_dir = stat.S_ISDIR(src[1].st_mode)
    dst_is_dir = dst is not None and stat.S_ISDIR(dst[1].st_mode)
    if dst is not None and not flags & RENAME_EXCHANGE:
        if src_is_dir and not dst_is_dir:
            raise _err(errno.ENOTDIR)
        if not src_is_dir and dst_is_dir:
            raise _err(errno.EISDIR)
        if dst_is_dir and self.list_dir(dst_node):
            raise _err(errno.ENOTEMPTY)

    src_lower = self._lower_has(old_parent, old_name)
    dst_lower = self._lower_has(new_parent, new_name)
    src_moved = _bring_up(self, src_node, old_parent, old_name)
    dst_moved = None
    if flags & RENAME_EXCHANGE:
        dst_moved = _bring_up(self, dst_node, new_parent, new_name)
    self.ensure_upper_dir(new_parent)
    self.ensure_upper_dir(old_parent)
    upper = self._fds[0]
    old_rel = child_path(self.path(old_parent), old_name)
    new_rel = child_path(self.path(new_parent), new_name)

    if flags & RENAME_EXCHANGE:
        renameat2(upper, old_rel, upper, new_rel, RENAME_EXCHANGE)
        if src_moved is None and src_is_dir and dst_lower:
            self._whiteouts.mark_opaque_at(upper, new_rel)
        if dst_moved is None and dst_is_dir and src_lower:
            self._whiteouts.mark_opaque_at(upper, old_rel)
        src_node.names.remove((old_parent, old_name))
        dst_node.names.remove((new_parent, new_name))
        src_node.names.append((new_parent, new_name))
        dst_node.names.append((old_parent, old_name))
        _settle_dir(self, dst_node, old_rel, dst_moved)
        _settle_dir(self, src_node, new_rel, src_moved)
        return

    in_upper = self._upper_has(new_rel)
    if in_upper is not None:
        if wh.is_whiteout_stat(in_upper):
            if src_is_dir:
                self._upper_unlink(new_rel)
        elif stat.S_ISDIR(in_upper.st_mode):
            _empty_dir(upper, new_rel)  # merged-empty: only whiteouts are left inside
    wh_rel = child_path(self.path(new_parent), wh.whiteout_file_name(new_name))
    if self._upper_has(wh_rel) is not None:
        self._upper_unlink(wh_rel)
    with near(upper, old_rel) as (old_fd, old_short), near(upper, new_rel) as (new_fd, new_short):
        os.rename(old_short, new_short, src_dir_fd=old_fd, dst_dir_fd=new_fd)
    # As the kernel: a pure upper directory moved into a merged one is made opaque,
    # so that nothing a lower layer may hold at its new name shows through.
    if src_is_dir and src_moved is None and (
            dst_lower or len(self.dir_layers(new_parent)) > 1
            or in_upper is not None and wh.is_whiteout_stat(in_upper)):
        self._whiteouts.mark_opaque_at(upper, new_rel)
    if src_lower:
        self._whiteouts.make_whiteout(upper, old_rel)
    src_node.names.remove((old_parent, old_name))
    src_node.names.append((new_parent, new_name))
    if dst_node is not None:
        self._remove_name(dst_node, new_parent, new_name)
        self.nodes.maybe_retire(dst_node)
    _settle_dir(self, src_node, new_rel, src_moved)


def _bring_up(self, node, parent, name) -> dict[int, str] | None:
    """Get the entry at PARENT/NAME into the upper layer before it moves.

    For a directory with lower parts, only the directory is copied up; the result is
    its path in each lower layer it merges (what the redirect must keep pointing at,
    also when it was already moved before), else None.
    """
    if not node.is_dir:
        self.copy_up(node, (parent, name))
        return None
    layers = self.dir_layers(node)
    if node.layer == 0 and len(layers) == 1:
        return None
    self.ensure_upper_dir(node)
    # Layer 1 first: the kernel's redirect is the path to look up in the layer just
    # below the upper (whose own redirects lead further down), held there or not.
    return {layer: self.layer_path(node, layer) for layer in (1,) + self.dir_layers(node)[1:]}


def _settle_dir(self, node, rel: str, moved: dict[int, str] | None) -> None:
    if not node.is_dir:
        return
    if moved:
        # The kernel's form: a path from the layer root.
        self._whiteouts.set_redirect_at(self._fds[0], rel, "/" + moved[1])
        self._redirects = True
        node.lower_paths = {0: rel, **moved}
    self.nodes.maybe_retire(node)


def _empty_dir(dir_fd: int, rel: str) -> None:
    with near(dir_fd, rel) as (parent_fd, short):
        fd = os.open(short, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=parent_fd)
    try:
        for name in os.listdir(fd):
            remove_entry(fd, name)
    finally:
        os.close(fd)
