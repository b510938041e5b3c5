"""What a container changed: the A/C/D list ``docker diff`` prints, from its upper dir.

The reference is moby's ``pkg/archive/changes.go`` in overlay mode: walk only the
upper directory (so the cost follows the number of changes, never the image size) and
look each upper path up in the lower layers. Where that code is loose we follow the
project spec (``spec/diff-commit.md`` section 1) instead:

* an entry is "in the lowers" when the merged lower view shows it: whiteouts and
  opaque directories of the lower layers count (Docker stats each layer blindly);
* an opaque upper directory is ``D`` only if it hid something, else ``A`` (our union
  marks a directory opaque when it replaces a deleted entry or a renamed one); below
  it everything is ``A`` (Docker would say ``C`` for a recreated name);
* every directory on the path to a reported change is ``C`` (Docker only adds the
  direct parent of ``A``/``D`` entries);
* a directory present in both, with nothing changed below, is ``C`` when its mode,
  owner or mtime differ (Docker compares mode, size and mtime; directory sizes depend
  on the file system, so size is left out and owner added, as a chown is a change).

Output order is the walk order: parents before children, names sorted in each
directory, which is the order ``docker diff`` prints.

A kernel-overlay directory renamed with ``redirect_dir=on`` carries a redirect xattr;
it is reported like the full copy our own union makes: the new name and its whole
merged content ``A`` (``D`` for the name if it replaced a lower entry), the old name
``D`` through its whiteout.
"""

from __future__ import annotations

import enum
import os
import stat
from collections import namedtuple
from collections.abc import Sequence

from overlayfs import whiteout as wh

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class ChangeKind(enum.Enum):
    ADDED = "A"
    CHANGED = "C"
    DELETED = "D"


class Change(namedtuple("Change", ["path", "kind"])):
    """PATH (absolute inside the container, e.g. "/etc/motd") and its ChangeKind.

    A named tuple rather than a dataclass: ``diff`` would import dataclasses and
    inspect for it, a quarter of its start-up."""

    __slots__ = ()

    def __str__(self) -> str:
        return f"{self.kind.value} {self.path}"


_GROUP_KEYS = {ChangeKind.CHANGED: "changed", ChangeKind.ADDED: "added",
               ChangeKind.DELETED: "deleted"}


def group_changes(found: Sequence[Change]) -> dict[str, list[str]]:
    """``{"changed": [...], "added": [...], "deleted": [...]}``, for ``--format json``."""
    grouped: dict[str, list[str]] = {"changed": [], "added": [], "deleted": []}
    for change in found:
        grouped[_GROUP_KEYS[change.kind]].append(change.path)
    return grouped


# --- the merged view of the lower layers -------------------------------------------

def close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        os.close(fd)


def _has_whiteout_file(dir_fd: int, name: str) -> bool:
    try:
        os.stat(wh.WHITEOUT_PREFIX + name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    return True


def lookup_lower(dir_fds: Sequence[int], name: str, *, want_dirs: bool = True
                 ) -> tuple[os.stat_result | None, list[int]]:
    """Look NAME up in the lower copies of one directory, TOP FIRST.

    Returns the stat of the visible entry (None if no lower shows it) and, when it is
    a directory and WANT_DIRS, newly opened fds of every lower copy that merges into
    it (down to the first opaque one). The caller closes those fds.
    """
    found: os.stat_result | None = None
    child_fds: list[int] = []
    last = len(dir_fds) - 1
    for index, fd in enumerate(dir_fds):
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            # A ".wh.NAME" file (fuse-overlayfs / Podman layers) hides the layers below.
            if index < last and _has_whiteout_file(fd, name):
                break
            continue
        if wh.is_whiteout_stat(st):
            break
        if found is None:
            found = st
        if not stat.S_ISDIR(st.st_mode) or not want_dirs:
            break  # a non-directory hides everything below it
        child = os.open(name, _DIR_FLAGS, dir_fd=fd)
        child_fds.append(child)
        if wh.is_opaque_fd(child):
            break
    return found, child_fds


def resolve_lower_path(root_fds: Sequence[int], path: str) -> tuple[bool, list[int]]:
    """Directory fds of PATH ("/a/b") in the merged lower view; (exists, fds)."""
    current: list[int] = list(root_fds)
    owned = False
    exists = True
    try:
        for part in path.split("/"):
            if not part or part == ".":
                continue
            st, fds = lookup_lower(current, part)
            if owned:
                close_all(current)
            current, owned = fds, True
            if st is None or not stat.S_ISDIR(st.st_mode):
                exists = st is not None
                close_all(current)
                return exists, []
        return exists, (current if owned else [os.dup(fd) for fd in current])
    except BaseException:
        if owned:
            close_all(current)
        raise


def redirect_path(dir_fd: int, parent_path: str) -> str | None:
    """The absolute lower path a renamed (redirected) upper directory comes from."""
    target = wh.redirect_of_fd(dir_fd)
    if target is None:
        return None
    if target.startswith("/"):
        return target
    return f"{parent_path}/{target}"


def merged_names(upper_fd: int | None, lower_fds: Sequence[int]) -> list[str]:
    """Visible names of a directory made of an upper copy and lower copies (sorted).

    A whiteout hides the name in the layers below its own, never in its own layer.
    """
    visible: dict[str, bool] = {}
    layers = ([upper_fd] if upper_fd is not None else []) + list(lower_fds)
    for fd in layers:
        deleted = []
        with os.scandir(fd) as it:
            for entry in it:
                name = entry.name
                if name.startswith(wh.WHITEOUT_PREFIX):
                    target = wh.whiteout_target(name)
                    if target is not None and entry.is_file(follow_symlinks=False):
                        deleted.append(target)
                    continue
                if name in visible:
                    continue
                if entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False) \
                        or entry.is_symlink():
                    visible[name] = True
                else:
                    visible[name] = not wh.is_whiteout_stat(entry.stat(follow_symlinks=False))
        for name in deleted:
            visible.setdefault(name, False)
    return sorted(name for name, shown in visible.items() if shown)


# --- the walk ------------------------------------------------------------------------

def _same_dir(upper: os.stat_result, lower: os.stat_result) -> bool:
    if upper.st_mode != lower.st_mode or upper.st_uid != lower.st_uid \
            or upper.st_gid != lower.st_gid:
        return False
    a, b = upper.st_mtime_ns, lower.st_mtime_ns
    # Tar keeps whole seconds only: a time with 0 ns matches any time in its second.
    return a == b or (a // 1_000_000_000 == b // 1_000_000_000
                      and (a % 1_000_000_000 == 0 or b % 1_000_000_000 == 0))


class _Scan:
    """One walk of an upper dir; collects changes in output order."""

    __slots__ = ("out", "root_lower_fds", "_chain", "_reported")

    def __init__(self, root_lower_fds: list[int]) -> None:
        self.out: list[Change] = []
        self.root_lower_fds = root_lower_fds
        self._chain: list[str] = []  # directories being walked, outermost first
        self._reported = 0           # how many of _chain are already in `out`

    def _emit_chain(self) -> None:
        """Report the directories on the way to a change that are not reported yet."""
        chain = self._chain
        while self._reported < len(chain):
            self.out.append(Change(chain[self._reported], ChangeKind.CHANGED))
            self._reported += 1

    def _emit(self, path: str, kind: ChangeKind) -> None:
        if self._reported < len(self._chain):
            self._emit_chain()
        self.out.append(Change(path, kind))

    def _enter(self, path: str, reported: bool) -> None:
        self._chain.append(path)
        if reported:
            self._reported = len(self._chain)

    def _leave(self) -> None:
        self._chain.pop()
        if self._reported > len(self._chain):
            self._reported = len(self._chain)

    def _lowers_of_new_dir(self, child_fd: int, parent: str) -> list[int]:
        """Lower copies merging into an upper directory that has no lower twin."""
        origin = redirect_path(child_fd, parent)
        if origin is None or wh.is_opaque_fd(child_fd):
            return []
        _, fds = resolve_lower_path(self.root_lower_fds, origin)
        return fds

    def walk(self, fd: int, path: str, lower_fds: Sequence[int]) -> None:
        """Compare upper directory FD (at PATH, "" for the root) with its lower copies."""
        with os.scandir(fd) as it:
            entries = sorted(it, key=_display_name)
        for entry in entries:
            name = entry.name
            if name.startswith(wh.WHITEOUT_PREFIX):
                # A ".wh.NAME" file deletes NAME; anything else in that namespace is
                # bookkeeping (fuse-overlayfs also leaves a ".wh..opq" 0:0 device).
                target = wh.whiteout_target(name)
                if target is not None and entry.is_file(follow_symlinks=False) \
                        and not _exists(fd, target):
                    self._emit(f"{path}/{target}", ChangeKind.DELETED)
                continue
            child_path = f"{path}/{name}"
            if entry.is_dir(follow_symlinks=False):
                self._walk_dir(fd, name, child_path, path, lower_fds)
                continue
            if not entry.is_file(follow_symlinks=False) and not entry.is_symlink() \
                    and wh.is_whiteout_stat(entry.stat(follow_symlinks=False)):
                self._emit(child_path, ChangeKind.DELETED)
                continue
            st, _ = lookup_lower(lower_fds, name, want_dirs=False)
            self._emit(child_path, ChangeKind.ADDED if st is None else ChangeKind.CHANGED)

    def _walk_dir(self, parent_fd: int, name: str, path: str, parent: str,
                  lower_fds: Sequence[int]) -> None:
        child_fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        try:
            hides_lower = wh.is_opaque_fd(child_fd) or wh.redirect_of_fd(child_fd) is not None
            lower_st, child_lowers = lookup_lower(lower_fds, name, want_dirs=not hides_lower)
            try:
                if hides_lower or lower_st is None:
                    kind = ChangeKind.ADDED if lower_st is None else ChangeKind.DELETED
                    self._emit(path, kind)
                    self._enter(path, True)
                    origin = self._lowers_of_new_dir(child_fd, parent)
                    try:
                        self.walk_added(child_fd, path, origin)
                    finally:
                        close_all(origin)
                elif stat.S_ISDIR(lower_st.st_mode) and _same_dir(
                        os.fstat(child_fd), lower_st):
                    self._enter(path, False)
                    self.walk(child_fd, path, child_lowers)
                else:
                    self._emit(path, ChangeKind.CHANGED)
                    self._enter(path, True)
                    self.walk(child_fd, path, child_lowers)
                self._leave()
            finally:
                close_all(child_lowers)
        finally:
            os.close(child_fd)

    def walk_added(self, fd: int | None, path: str, lower_fds: Sequence[int]) -> None:
        """Everything visible below a new directory is ``A`` (upper and redirect origin)."""
        if fd is not None and not lower_fds:
            self._walk_added_upper(fd, path)
            return
        for name in merged_names(fd, lower_fds):
            child_path = f"{path}/{name}"
            upper_st = None
            if fd is not None:
                try:
                    upper_st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    upper_st = None
            self._emit(child_path, ChangeKind.ADDED)
            if upper_st is not None:
                if stat.S_ISDIR(upper_st.st_mode):
                    self._added_upper_dir(fd, name, child_path, path, lower_fds)
            else:
                lower_st, child_lowers = lookup_lower(lower_fds, name)
                if lower_st is not None and stat.S_ISDIR(lower_st.st_mode):
                    self._descend_added(None, child_path, child_lowers)
                else:
                    close_all(child_lowers)

    def _walk_added_upper(self, fd: int, path: str) -> None:
        """The common case: a new upper-only tree. Uses d_type, no stat per file."""
        with os.scandir(fd) as it:
            entries = sorted(it, key=_entry_name)
        out = self.out
        self._emit_chain()
        added = ChangeKind.ADDED
        for entry in entries:
            name = entry.name
            if name.startswith(wh.WHITEOUT_PREFIX):
                continue
            if entry.is_dir(follow_symlinks=False):
                child_path = f"{path}/{name}"
                out.append(Change(child_path, added))
                self._added_upper_dir(fd, name, child_path, path, ())
                continue
            if not entry.is_file(follow_symlinks=False) and not entry.is_symlink() \
                    and wh.is_whiteout_stat(entry.stat(follow_symlinks=False)):
                continue  # deletes nothing: nothing below a new directory
            out.append(Change(f"{path}/{name}", added))

    def _added_upper_dir(self, parent_fd: int, name: str, path: str, parent: str,
                         lower_fds: Sequence[int]) -> None:
        child_fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        try:
            if wh.is_opaque_fd(child_fd):
                child_lowers: list[int] = []
            elif (origin := redirect_path(child_fd, parent)) is not None:
                _, child_lowers = resolve_lower_path(self.root_lower_fds, origin)
            elif lower_fds:
                _, child_lowers = lookup_lower(lower_fds, name)
            else:
                child_lowers = []
            self._descend_added(child_fd, path, child_lowers)
        finally:
            os.close(child_fd)

    def _descend_added(self, fd: int | None, path: str, lower_fds: list[int]) -> None:
        try:
            self._enter(path, True)
            self.walk_added(fd, path, lower_fds)
            self._leave()
        finally:
            close_all(lower_fds)


def _display_name(entry: os.DirEntry) -> str:
    """Sort key: a ``.wh.NAME`` whiteout file sorts where NAME would."""
    name = entry.name
    if name.startswith(wh.WHITEOUT_PREFIX):
        return wh.whiteout_target(name) or name
    return name


def _entry_name(entry: os.DirEntry) -> str:
    return entry.name


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    return True


def changes(lowers: Sequence[str | os.PathLike], upper: str | os.PathLike) -> list[Change]:
    """The changes of UPPER against LOWERS (top first), in ``docker diff`` order."""
    lower_fds: list[int] = []
    try:
        for lower in lowers:
            lower_fds.append(os.open(lower, _DIR_FLAGS & ~os.O_NOFOLLOW))
        upper_fd = os.open(upper, _DIR_FLAGS & ~os.O_NOFOLLOW)
        try:
            scan = _Scan(lower_fds)
            scan.walk(upper_fd, "", lower_fds)
        finally:
            os.close(upper_fd)
    finally:
        close_all(lower_fds)
    return scan.out
