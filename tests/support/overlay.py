"""Real union mounts for semantic tests: layer builders, mounts, tree snapshots.

The same test runs against two implementations: the kernel overlay (the oracle, see
spec/union-fs.md section 3) and a FUSE program with fuse-overlayfs' command line, by
default ours. ``$LAYERBOX_FS_UNDER_TEST`` names the FUSE program, so the harness can
be checked against Debian's ``fuse-overlayfs`` too.

Layers are described as ``{relative path: entry}`` dicts (parents are created as
plain directories when not listed), e.g.::

    build_layer(lower, {"d": Dir(opaque="xattr"), "d/f": File(b"x"), "g": Whiteout()})
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from overlayfs import whiteout as wh

KERNEL = "kernel"
UNDER_TEST_ENV = "LAYERBOX_FS_UNDER_TEST"


def fs_under_test() -> str:
    return os.environ.get(UNDER_TEST_ENV) or "layerbox-overlayfs"


def is_fuse_overlayfs(impl: str) -> bool:
    return os.path.basename(impl) == "fuse-overlayfs"


# ---------------------------------------------------------------- layer entries

@dataclass(frozen=True)
class File:
    content: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int | None = 1_600_000_000
    xattrs: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Dir:
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    #: None, or how the directory is marked opaque: "trusted" / "user" /
    #: "fuseoverlayfs" xattr, or "marker" (a .wh..wh..opq file inside).
    opaque: str | None = None
    mtime: int | None = None
    xattrs: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Symlink:
    target: str
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class HardLink:
    """Another name for the file at ``to`` (a path in the same layer, built earlier)."""
    to: str


@dataclass(frozen=True)
class Fifo:
    mode: int = 0o644


@dataclass(frozen=True)
class Device:
    char: bool = True
    rdev: tuple[int, int] = (1, 3)
    mode: int = 0o644


@dataclass(frozen=True)
class Whiteout:
    """A deleted entry: "chardev" (0:0 device, the kernel form) or "file" (.wh.NAME)."""
    form: str = "chardev"


_OPAQUE_XATTR = {"trusted": wh.TRUSTED_OPAQUE, "user": wh.USER_OPAQUE,
                 "fuseoverlayfs": wh.FUSE_OVERLAYFS_OPAQUE}


def build_layer(root, entries: Mapping[str, object]) -> Path:
    """Create ROOT (if needed) and every entry, parents before children."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for rel in sorted(entries, key=lambda p: p.count("/")):
        _make(root, rel, entries[rel])
    # Directory mtimes last: creating children changes them.
    for rel, entry in entries.items():
        if isinstance(entry, Dir) and entry.mtime is not None:
            os.utime(root / rel, (entry.mtime, entry.mtime), follow_symlinks=False)
    return root


def _make(root: Path, rel: str, entry) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(entry, File):
        path.write_bytes(entry.content)
        _set_xattrs(path, entry.xattrs)
        os.chown(path, entry.uid, entry.gid)
        os.chmod(path, entry.mode)
        if entry.mtime is not None:
            os.utime(path, (entry.mtime, entry.mtime))
    elif isinstance(entry, Dir):
        path.mkdir(exist_ok=True)
        _set_xattrs(path, entry.xattrs)
        if entry.opaque == "marker":
            (path / wh.OPAQUE_MARKER_NAME).write_bytes(b"")
        elif entry.opaque is not None:
            os.setxattr(path, _OPAQUE_XATTR[entry.opaque], b"y")
        os.chown(path, entry.uid, entry.gid)
        os.chmod(path, entry.mode)
    elif isinstance(entry, Symlink):
        os.symlink(entry.target, path)
        os.chown(path, entry.uid, entry.gid, follow_symlinks=False)
    elif isinstance(entry, HardLink):
        os.link(root / entry.to, path)
    elif isinstance(entry, Fifo):
        os.mkfifo(path, entry.mode)
        os.chmod(path, entry.mode)
    elif isinstance(entry, Device):
        kind = stat.S_IFCHR if entry.char else stat.S_IFBLK
        os.mknod(path, kind | entry.mode, os.makedev(*entry.rdev))
    elif isinstance(entry, Whiteout):
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if entry.form == "chardev":
                wh.WhiteoutWriter().make_whiteout(fd, path.name)
            else:
                os.close(os.open(wh.whiteout_file_name(path.name),
                                 os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
        finally:
            os.close(fd)
    else:
        raise TypeError(f"unknown layer entry {entry!r}")


def _set_xattrs(path: Path, xattrs: Mapping[str, bytes]) -> None:
    for name, value in xattrs.items():
        os.setxattr(path, name, value)


# ---------------------------------------------------------------- mounts

def _overlay_options(lowers: Sequence, upper, work) -> list[str]:
    opts = ["lowerdir=" + ":".join(str(p).replace(":", "\\:") for p in lowers)]
    if upper is not None:
        opts += [f"upperdir={upper}", f"workdir={work}"]
    return opts


@contextlib.contextmanager
def kernel_overlay(lowers: Sequence, upper, work, mnt, *, redirect_dir: bool = False,
                   extra: Sequence[str] = ()) -> Iterator[Path]:
    """``mount -t overlay``; ``index=off`` so layers can be reused after unmount."""
    opts = _overlay_options(lowers, upper, work) + ["index=off", *extra]
    if redirect_dir:
        opts.append("redirect_dir=on")
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", ",".join(opts), str(mnt)],
                   check=True, capture_output=True)
    try:
        yield Path(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@contextlib.contextmanager
def fuse_overlay(prog: str, lowers: Sequence, upper, work, mnt,
                 timeout: float = 20.0) -> Iterator[Path]:
    """Run PROG with fuse-overlayfs' command line; always ``fusermount3 -u -z``."""
    argv = [prog, "-o", ",".join(_overlay_options(lowers, upper, work)), str(mnt)]
    try:
        from tests.support.fusemount import mounted
    except ImportError:
        mounted = None
    if mounted is not None:
        # The mount helper's hardened fixture (fails on a server traceback too).
        with mounted(argv, mnt, timeout=timeout):
            yield Path(mnt)
        return
    with _simple_mount(argv, mnt, timeout):
        yield Path(mnt)


@contextlib.contextmanager
def _simple_mount(argv: list[str], mnt, timeout: float) -> Iterator[None]:
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while not os.path.ismount(mnt):
                status = proc.poll()
                if status not in (None, 0) or time.monotonic() > deadline:
                    err.seek(0)
                    raise RuntimeError(f"{argv[0]} did not mount (status {status}): "
                                       + err.read().decode(errors="replace"))
                time.sleep(0.02)
            yield
        finally:
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)


@contextlib.contextmanager
def union_mount(impl: str, lowers: Sequence, upper, work, mnt, *,
                redirect_dir: bool = False) -> Iterator[Path]:
    """The kernel overlay for ``impl == KERNEL``, else the FUSE program IMPL."""
    if impl == KERNEL:
        with kernel_overlay(lowers, upper, work, mnt, redirect_dir=redirect_dir) as m:
            yield m
    else:
        with fuse_overlay(impl, lowers, upper, work, mnt) as m:
            yield m


@dataclass
class Union:
    """One mounted union: its layer dirs and the merged mountpoint."""
    impl: str
    lowers: list[Path]
    upper: Path | None
    work: Path | None
    mnt: Path


class UnionFactory:
    """Builds layers under BASE and mounts them; ``close()`` unmounts everything."""

    def __init__(self, impl: str, base) -> None:
        self.impl = impl
        self.base = Path(base)
        self._stack = contextlib.ExitStack()
        self._count = 0

    def __call__(self, *layers: Mapping[str, object], upper: Mapping[str, object] | None = None,
                 writable: bool = True, redirect_dir: bool = False,
                 prepare: Callable[[list[Path]], None] | None = None) -> Union:
        """Mount LAYERS (top first) with an upper built from UPPER (empty if None).

        PREPARE, if given, gets the built lower dirs before the mount (for content the
        entry specs cannot express, like trees deeper than PATH_MAX)."""
        self._count += 1
        top = self.base / f"u{self._count}"
        lowers = [build_layer(top / f"lower{i}", spec) for i, spec in enumerate(layers)]
        if prepare is not None:
            prepare(lowers)
        upper_dir = work = None
        if writable:
            upper_dir = build_layer(top / "upper", upper or {})
            work = top / "work"
            work.mkdir()
        mnt = top / "mnt"
        mnt.mkdir()
        self._stack.enter_context(union_mount(self.impl, lowers, upper_dir, work, mnt,
                                              redirect_dir=redirect_dir))
        return Union(self.impl, lowers, upper_dir, work, mnt)

    def close(self) -> None:
        self._stack.close()


# ---------------------------------------------------------------- snapshots

def snapshot(root, *, times_for: Sequence[str] = ()) -> dict:
    """A comparable description of the tree at ROOT (a merged mount or a plain dir).

    ``{"entries": {path: (...)}, "links": sorted groups of paths sharing an inode}``.
    Inode numbers and times are left out, except the mtime of the paths in TIMES_FOR.
    Directory sizes are file-system specific and left out too.
    """
    root = os.fspath(root)
    entries: dict[str, tuple] = {}
    by_inode: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            entries[rel] = describe_entry(path, st, with_mtime=rel in times_for)
            if not stat.S_ISDIR(st.st_mode):
                by_inode.setdefault((st.st_dev, st.st_ino), []).append(rel)
    links = sorted(sorted(group) for group in by_inode.values() if len(group) > 1)
    return {"entries": entries, "links": links}


def describe_entry(path, st: os.stat_result, *, with_mtime: bool = False) -> tuple:
    kind = stat.S_IFMT(st.st_mode)
    extra: object = None
    size = None
    if stat.S_ISREG(kind):
        size = st.st_size
        with open(path, "rb") as f:
            extra = hashlib.sha256(f.read()).hexdigest()[:16]
    elif stat.S_ISLNK(kind):
        extra = os.readlink(path)
    elif stat.S_ISCHR(kind) or stat.S_ISBLK(kind):
        extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
    nlink = None if stat.S_ISDIR(kind) else st.st_nlink
    return (stat.filemode(st.st_mode), st.st_uid, st.st_gid, size, extra, nlink,
            visible_xattrs(path), st.st_mtime_ns if with_mtime else None)


def visible_xattrs(path) -> tuple:
    """Sorted (name, value) of the non-bookkeeping xattrs (security.* left out:
    SELinux/capabilities are not what a union shows or hides)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    result = []
    for name in sorted(names):
        if wh.is_private_xattr(name) or name.startswith("security."):
            continue
        try:
            result.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError as exc:
            result.append((name, f"errno {exc.errno}"))
    return tuple(result)


def upper_kinds(upper) -> dict[str, str]:
    """The physical upper dir, coarsely: per path "whiteout", "opaque-dir", "dir",
    "file", "symlink", ... (for checking what an operation left behind)."""
    result = {}
    upper = os.fspath(upper)
    for dirpath, dirnames, filenames in os.walk(upper):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, upper)
            st = os.lstat(path)
            if wh.is_whiteout_stat(st) or wh.whiteout_target(name) is not None:
                result[rel] = "whiteout"
            elif stat.S_ISDIR(st.st_mode):
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    result[rel] = "opaque-dir" if wh.is_opaque_fd(fd) else "dir"
                finally:
                    os.close(fd)
            elif stat.S_ISREG(st.st_mode):
                result[rel] = "file"
            elif stat.S_ISLNK(st.st_mode):
                result[rel] = "symlink"
            else:
                result[rel] = stat.filemode(st.st_mode)[0]
    return result


def redirects_in(layer) -> dict[str, str]:
    """Directories of a physical layer that carry an overlay redirect → its target."""
    result = {}
    layer = os.fspath(layer)
    for dirpath, dirnames, _ in os.walk(layer):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):  # os.walk lists symlinks to directories here
                continue
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                target = wh.redirect_of_fd(fd)
            finally:
                os.close(fd)
            if target is not None:
                result[os.path.relpath(path, layer)] = target
    return result


def whiteout_in_upper(upper, rel: str) -> bool:
    parent, name = os.path.split(os.path.join(os.fspath(upper), rel))
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return wh.is_whiteout_at(fd, name)
    finally:
        os.close(fd)


def fresh_base(prefix: str = "fstest-") -> Path:
    """A temp dir that uid 65534 can traverse (for non-root access tests)."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    return base


def remove_base(base) -> None:
    shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------- renameat2

AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
_libc = None


def renameat2(old, new, flags: int = 0, *, old_dir_fd: int = AT_FDCWD,
              new_dir_fd: int = AT_FDCWD) -> None:
    """renameat2(2) through libc (Python has no binding for the flags)."""
    import ctypes
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.renameat2(old_dir_fd, os.fsencode(old), new_dir_fd, os.fsencode(new),
                       flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fsdecode(old), None, os.fsdecode(new))
