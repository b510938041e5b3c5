"""Differential property: the FS under test does what the kernel overlay does.

Hypothesis draws a sequence of file operations over a small name space (so names
collide); the same sequence runs on a kernel overlay (redirect_dir=on, so directory
renames succeed) and on the program under test, each over its own copy of the same
lower layers. Per step the outcome (0 or errno) must match; at the end the merged
trees, the A/C/D changes of both upper dirs and the physical uppers' shape (which
directories carry a redirect to which lower path, which files were copied up) must
match. "remount" mounts the same layers again (redirects are then read back from the
xattrs); "rotate" makes the upper the top lower under a new empty upper, as
unionmount-testsuite's ``--ov=2`` does. On failure the operation list is printed as a
reproducer. ``$LAYERBOX_DIFF_EXAMPLES`` (default 60) bounds it.
"""

import contextlib
import errno
import os

import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from tests.support.overlay import (RENAME_EXCHANGE, RENAME_NOREPLACE, Dir, File, Symlink,
                                   Whiteout, build_layer, fresh_base, fs_under_test,
                                   kernel_overlay, fuse_overlay, redirects_in, remove_base,
                                   renameat2, snapshot, upper_kinds)

changes_module = pytest.importorskip("overlayfs.changes")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")

EXAMPLES = int(os.environ.get("LAYERBOX_DIFF_EXAMPLES", "60"))
NAMES = ["a", "b", "c", "d"]

TOP = {"a/b": File(b"top a/b"), "a/c": Whiteout(), "b": Dir(opaque="trusted"),
       "b/a": File(b"top b/a"), "c": Symlink("a/b"), "d/d/d": File(b"deep")}
BOTTOM = {"a/c": File(b"bottom a/c"), "a/d/a": File(b"bottom a/d/a"), "b/b": File(b"hidden"),
          "d/a": File(b"bottom d/a", mode=0o600, uid=5, gid=6,
                      xattrs={"user.x": b"1"}), "d/d/c": Dir()}

paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
data = st.binary(max_size=20)
operations = st.one_of(
    st.tuples(st.just("create"), paths, data),
    st.tuples(st.just("write"), paths, st.integers(0, 30), data),
    st.tuples(st.just("truncate"), paths, st.integers(0, 30)),
    st.tuples(st.just("chmod"), paths, st.sampled_from([0o600, 0o755, 0o4711])),
    st.tuples(st.just("chown"), paths, st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.just("utime"), paths, st.integers(1_000_000_000, 1_700_000_000)),
    st.tuples(st.just("mkdir"), paths),
    st.tuples(st.just("rmdir"), paths),
    st.tuples(st.just("unlink"), paths),
    st.tuples(st.just("rename"), paths, paths, st.sampled_from([0, RENAME_NOREPLACE,
                                                                RENAME_EXCHANGE])),
    st.tuples(st.just("link"), paths, paths),
    st.tuples(st.just("symlink"), st.sampled_from(NAMES + ["../a", "/x"]), paths),
    st.tuples(st.just("setxattr"), paths, st.sampled_from(["user.x", "user.y"]), data),
    st.tuples(st.just("remount")),
    st.tuples(st.just("rotate")),
)


def apply(root, op) -> int:
    """Run OP relative to ROOT; 0 or the errno it failed with."""
    kind, *args = op
    p = os.path.join(root, args[0]) if kind != "symlink" else None
    try:
        if kind == "create":
            fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
            try:
                os.write(fd, args[1])
            finally:
                os.close(fd)
        elif kind == "write":
            fd = os.open(p, os.O_WRONLY)
            try:
                os.pwrite(fd, args[2], args[1])
            finally:
                os.close(fd)
        elif kind == "truncate":
            os.truncate(p, args[1])
        elif kind == "chmod":
            os.chmod(p, args[1], follow_symlinks=True)
        elif kind == "chown":
            os.chown(p, args[1], args[2], follow_symlinks=False)
        elif kind == "utime":
            os.utime(p, (args[1], args[1]), follow_symlinks=False)
        elif kind == "mkdir":
            os.mkdir(p, 0o755)
        elif kind == "rmdir":
            os.rmdir(p)
        elif kind == "unlink":
            os.unlink(p)
        elif kind == "rename":
            renameat2(p, os.path.join(root, args[1]), args[2])
        elif kind == "link":
            os.link(p, os.path.join(root, args[1]), follow_symlinks=False)
        elif kind == "symlink":
            os.symlink(args[0], os.path.join(root, args[1]))
        elif kind == "setxattr":
            os.setxattr(p, args[1], args[2], follow_symlinks=False)
    except OSError as exc:
        return exc.errno
    return 0


class _Side:
    """One implementation's layers and mount; remount and rotate keep the layers."""

    def __init__(self, base, name, mount):
        self.dir = base / name
        self.lowers = [build_layer(self.dir / "top", TOP), build_layer(self.dir / "bottom", BOTTOM)]
        self.mnt = self.dir / "mnt"
        self.mnt.mkdir()
        self._mount = mount
        self._count = 0
        self._stack = contextlib.ExitStack()
        self._new_upper()

    def _new_upper(self):
        self._count += 1
        self.upper, self.work = (self.dir / f"{d}{self._count}" for d in ("upper", "work"))
        self.upper.mkdir()
        self.work.mkdir()

    def mount(self):
        self._stack.enter_context(self._mount(self.lowers, self.upper, self.work, self.mnt))

    def unmount(self):
        self._stack.close()

    def cycle(self, kind):
        self.unmount()
        if kind == "rotate":
            self.lowers.insert(0, self.upper)
            self._new_upper()
        self.mount()


def _resolved_redirects(upper) -> dict[str, str]:
    """Redirected upper dirs → the lower path they name (the kernel writes a bare name
    for a rename within one directory, relative to the parent's lower path)."""
    raw = redirects_in(upper)

    def lower_path(rel):
        if not rel:
            return ""
        parent, _, name = rel.rpartition("/")
        target = raw.get(rel)
        if target is not None and target.startswith("/"):
            return target.strip("/")
        base = lower_path(parent)
        return f"{base}/{target or name}" if base else (target or name)

    return {rel: lower_path(rel) for rel in raw}


def _changes(lowers, upper) -> list[str]:
    return [str(c) for c in changes_module.changes(lowers, upper)]


def _upper_shape(upper) -> dict:
    files = sorted(rel for rel, kind in upper_kinds(upper).items() if kind == "file")
    return {"redirects": _resolved_redirects(upper), "copied-up files": files}


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(operations, max_size=30))
# Found by this property: copy-up of a child left the parent's upper mtime changed.
@example(ops=[("create", "a", b""), ("chown", "a/d", 0, 0)])
# Directory renames across layers, read back after a remount and after --ov=2's
# rotation (redirects in the upper and in a lower layer, a redirect renamed again).
@example(ops=[("rename", "a", "b/c", 0), ("rotate",), ("write", "b/c/d/a", 0, b"x"),
              ("rename", "b/c/d", "d/b", 0), ("remount",), ("unlink", "d/b/a"),
              ("rename", "b/c", "c", 0), ("rename", "d", "a", 0), ("mkdir", "d"),
              ("rotate",), ("rename", "a/b", "b", RENAME_EXCHANGE), ("create", "b/c/b", b"n")])
def test_same_outcomes_as_the_kernel_overlay(ops):
    note(f"reproducer: ops = {ops!r}")
    base = fresh_base("fsdiff-")
    try:
        kernel = _Side(base, "kernel", lambda lowers, upper, work, mnt: kernel_overlay(
            lowers, upper, work, mnt, redirect_dir=True))
        fuse = _Side(base, "fuse", lambda lowers, upper, work, mnt: fuse_overlay(
            fs_under_test(), lowers, upper, work, mnt))
        try:
            kernel.mount()
            fuse.mount()
            for step, op in enumerate(ops):
                if op[0] in ("remount", "rotate"):
                    kernel.cycle(op[0])
                    fuse.cycle(op[0])
                    continue
                expected, got = apply(kernel.mnt, op), apply(fuse.mnt, op)
                assert errno.errorcode.get(got, got) == errno.errorcode.get(expected, expected), \
                    f"step {step} {op!r}: kernel {expected}, under test {got}\nops = {ops!r}"
            assert snapshot(fuse.mnt) == snapshot(kernel.mnt), \
                f"merged trees differ\nops = {ops!r}"
        finally:
            kernel.unmount()
            fuse.unmount()
        assert _changes(fuse.lowers, fuse.upper) == _changes(kernel.lowers, kernel.upper), \
            f"upper changes differ\nops = {ops!r}"
        assert _upper_shape(fuse.upper) == _upper_shape(kernel.upper), \
            f"physical uppers differ\nops = {ops!r}"
    finally:
        remove_base(base)
