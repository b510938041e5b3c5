"""Differential property: the FS under test does what the kernel overlay does.

Hypothesis draws a sequence of file operations over a small name space (so names
collide); the same sequence runs on a kernel overlay (redirect_dir=on, so directory
renames succeed) and on the program under test, each over its own copy of the same
lower layers. Per step the outcome (0 or errno) must match; at the end the merged
trees and the A/C/D changes of both upper dirs must match. On failure the operation
list is printed as a reproducer. ``$LAYERBOX_DIFF_EXAMPLES`` (default 60) bounds it.
"""

import contextlib
import errno
import os

import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from tests.support.overlay import (RENAME_EXCHANGE, RENAME_NOREPLACE, Dir, File, Symlink,
                                   Whiteout, build_layer, fresh_base, fs_under_test,
                                   kernel_overlay, fuse_overlay, remove_base, renameat2,
                                   snapshot)

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


def _layers(base, name):
    top = build_layer(base / name / "top", TOP)
    bottom = build_layer(base / name / "bottom", BOTTOM)
    upper, work, mnt = (base / name / d for d in ("upper", "work", "mnt"))
    for d in (upper, work, mnt):
        d.mkdir()
    return [top, bottom], upper, work, mnt


def _changes(lowers, upper) -> list[str]:
    return [str(c) for c in changes_module.changes(lowers, upper)]


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(operations, max_size=30))
# Found by this property: copy-up of a child left the parent's upper mtime changed.
@example(ops=[("create", "a", b""), ("chown", "a/d", 0, 0)])
def test_same_outcomes_as_the_kernel_overlay(ops):
    note(f"reproducer: ops = {ops!r}")
    base = fresh_base("fsdiff-")
    try:
        k_lowers, k_upper, k_work, k_mnt = _layers(base, "kernel")
        f_lowers, f_upper, f_work, f_mnt = _layers(base, "fuse")
        with contextlib.ExitStack() as stack:
            stack.enter_context(kernel_overlay(k_lowers, k_upper, k_work, k_mnt,
                                               redirect_dir=True))
            stack.enter_context(fuse_overlay(fs_under_test(), f_lowers, f_upper, f_work,
                                             f_mnt))
            for step, op in enumerate(ops):
                expected, got = apply(k_mnt, op), apply(f_mnt, op)
                assert errno.errorcode.get(got, got) == errno.errorcode.get(expected, expected), \
                    f"step {step} {op!r}: kernel {expected}, under test {got}\nops = {ops!r}"
            assert snapshot(f_mnt) == snapshot(k_mnt), f"merged trees differ\nops = {ops!r}"
        assert _changes(f_lowers, f_upper) == _changes(k_lowers, k_upper), \
            f"upper changes differ\nops = {ops!r}"
    finally:
        remove_base(base)
