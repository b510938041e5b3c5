"""The name tree and inode table of a mounted union.

Invariants (the rest of the package relies on them):

* A :class:`Node` is one merged file system object. Its FUSE inode number never
  changes while the node lives, also not when copy-up moves its backing file from a
  lower layer to the upper one.
* A node lives while the kernel holds a lookup reference (``lookups > 0``), or while
  a handle is open on it. Only ``forget`` retires a node (the FUSE lookup-count rules).
  A retired node that still has names leaves its inode number behind, keyed by its
  backing identities, and the node made for that file later takes it again: the
  kernel forgets inodes whenever it likes (memory pressure, ``drop_caches``), and
  ``st_ino`` must stay the same for the life of the mount all the same.
* Each name of a node is a ``(parent Node, name)`` pair; directories have at most one
  name, hard-linked files several. A node with no names is unlinked (it may still be
  open). Paths are derived from names on demand, never stored, so a directory rename
  is O(1) for everything below it.
* ``identity`` maps a backing ``(st_dev, st_ino)`` to the node, which is how two
  names of one hard-linked file resolve to one node.
* When every layer is on one file system, a node takes its backing file's inode
  number (as the kernel overlay reports it: ``ls -i`` agrees inside and outside the
  mount); when that number is taken, one from a counter above ``_COUNTED_BASE``, out
  of the range of real inode numbers. Layers on several file systems: the counter
  alone, from 2.
"""

from __future__ import annotations

import errno
import functools
import os
from typing import Iterator

ROOT_INODE = 1
NAME_MAX = 255
_COUNTED_BASE = 1 << 40


def os_error(code: int) -> OSError:
    return OSError(code, _strerror(code))


@functools.cache
def _strerror(code: int) -> str:
    return os.strerror(code)  # decodes the C library's message with the locale: slow


def check_name(name: str) -> None:
    """Names over NAME_MAX bytes: FUSE does not check, so we must."""
    if len(os.fsencode(name)) > NAME_MAX:
        raise os_error(errno.ENAMETOOLONG)


class Node:
    __slots__ = ("ino", "lookups", "names", "is_dir", "layer", "dir_layers",
                 "keys", "open_count", "merged_dir", "upper_names", "origin",
                 "lower_xattrs", "no_upper_xattrs", "lower_paths")

    def __init__(self, ino: int, is_dir: bool, layer: int):
        self.ino = ino
        self.lookups = 0
        self.names: list[tuple[Node, str]] = []
        self.is_dir = is_dir
        #: Index of the topmost layer that holds the backing entry (0 is the upper
        #: layer when the mount has one).
        self.layer = layer
        #: Directories: indexes of the layers whose copies are merged, topmost first,
        #: down to the first opaque one. None until first needed.
        self.dir_layers: tuple[int, ...] | None = None
        #: True when a directory spans more than one layer (st_nlink is then 1, as the
        #: kernel overlay reports it).
        self.merged_dir = False
        self.keys: list[tuple[int, int]] = []
        self.open_count = 0
        #: Names (parent ino, name) that exist physically in the upper layer; only
        #: tracked for hard-linked lower files copied up through the index.
        self.upper_names: set[tuple[int, str]] | None = None
        #: (st_dev, st_ino) of the lower file this node was copied up from.
        self.origin: tuple[int, int] | None = None
        #: Xattr names of a lower entry, read once: lower layers never change, and
        #: tools like `ls -l` ask for security.selinux on every file.
        self.lower_xattrs: tuple[str, ...] | None = None
        #: Upper (or index) file: True once seen to have no xattrs but our private
        #: ones, False if it has some, None if not known. Only our setxattr can add one (writes and chown
        #: only ever remove security.capability), so True stays true until setxattr:
        #: the kernel asks for security.capability before every write and chown.
        self.no_upper_xattrs: bool | None = None
        #: Directories reached through a redirect (a renamed lower directory): layer →
        #: path of this directory in that layer, for every lower layer it merges.
        #: None when every layer holds it at its merged path.
        self.lower_paths: dict[int, str] | None = None

    def __repr__(self) -> str:
        return f"<Node {self.ino} layer={self.layer} names={[(p.ino, n) for p, n in self.names]}>"


class NodeTable:
    """Inode numbers → nodes, and backing identities → nodes."""

    __slots__ = ("_nodes", "_identity", "_next_ino", "_retired_ino", "_passthrough_dev")

    def __init__(self, passthrough_dev: int | None = None) -> None:
        self._nodes: dict[int, Node] = {}
        self._identity: dict[tuple[int, int], Node] = {}
        self._next_ino = ROOT_INODE + 1 if passthrough_dev is None else _COUNTED_BASE
        #: The st_dev of all layers when they share one file system, else None.
        self._passthrough_dev = passthrough_dev
        #: Backing identity → inode number of a retired node whose file still exists.
        self._retired_ino: dict[tuple[int, int], int] = {}

    def add_root(self, layer: int, key: tuple[int, int]) -> Node:
        root = Node(ROOT_INODE, True, layer)
        root.lookups = 1  # the kernel never forgets the root
        self._nodes[ROOT_INODE] = root
        self.bind(root, key)
        return root

    def new(self, is_dir: bool, layer: int, key: tuple[int, int]) -> Node:
        ino = self._retired_ino.pop(key, None)
        if ino is None and key[0] == self._passthrough_dev and ROOT_INODE < key[1] < _COUNTED_BASE:
            ino = key[1]
        if ino is None or ino in self._nodes:
            ino = self._next_ino
            self._next_ino += 1
        node = Node(ino, is_dir, layer)
        self._nodes[node.ino] = node
        self.bind(node, key)
        return node

    def get(self, ino: int) -> Node:
        return self._nodes[ino]

    def find(self, ino: int) -> Node | None:
        return self._nodes.get(ino)

    def by_identity(self, key: tuple[int, int]) -> Node | None:
        return self._identity.get(key)

    def bind(self, node: Node, key: tuple[int, int]) -> None:
        self._identity[key] = node
        node.keys.append(key)

    def unbind_all(self, node: Node) -> None:
        for key in node.keys:
            if self._identity.get(key) is node:
                del self._identity[key]
        node.keys.clear()

    def maybe_retire(self, node: Node) -> None:
        if node.lookups <= 0 and node.open_count <= 0 and node.ino != ROOT_INODE:
            self._nodes.pop(node.ino, None)
            for key in node.keys:
                if node.names:
                    self._retired_ino[key] = node.ino
                else:  # the file is gone; a new file may reuse its backing inode
                    self._retired_ino.pop(key, None)
            self.unbind_all(node)

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes.values())


def node_path(node: Node) -> str:
    """The node's path relative to the layer roots ("" for the root), via its first name."""
    parts: list[str] = []
    while node.names:
        parent, name = node.names[0]
        parts.append(name)
        node = parent
    if node.ino != ROOT_INODE:
        raise FileNotFoundError("node is unlinked")
    return "/".join(reversed(parts))


def child_path(parent_path: str, name: str) -> str:
    return f"{parent_path}/{name}" if parent_path else name


def at(path: str) -> str:
    """A path usable with ``dir_fd=`` (the root is ".")."""
    return path or "."
