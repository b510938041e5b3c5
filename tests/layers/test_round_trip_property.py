"""Property: for any upper dir, unpack(export(upper)) is the upper, and export is stable."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overlayfs.layer_tar import export_layer, unpack_layer
from tests.layers.treeutil import describe

ROOT = os.geteuid() == 0

names = st.sampled_from(["a", "b", "c", "d.txt", "é", "-x", "a b", ".hidden", "n" * 150,
                         os.fsdecode(b"raw\xff")])
entry_kinds = st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo", "whiteout",
                               "opaque-dir"])


@st.composite
def trees(draw):
    """A list of (path, kind, mode, mtime, payload) creation steps, parents first."""
    steps = []
    dirs = [""]
    files = []
    for _ in range(draw(st.integers(1, 14))):
        parent = draw(st.sampled_from(dirs))
        path = os.path.join(parent, draw(names))
        if any(p == path or p.startswith(path + "/") for p, *_ in steps):
            continue
        kind = draw(entry_kinds)
        if kind == "hardlink" and not files:
            kind = "file"
        if kind in ("whiteout", "opaque-dir") and not ROOT:
            kind = "dir" if kind == "opaque-dir" else "file"
        mode = draw(st.sampled_from([0o644, 0o600, 0o755, 0o4755, 0o1777, 0o444]))
        mtime = draw(st.integers(0, 2**33))
        payload = (draw(st.binary(max_size=1500)) if kind == "file"
                   else draw(st.sampled_from(files)) if kind == "hardlink"
                   else draw(st.sampled_from(["/abs", "rel/x", "x/../y", "/../etc"])) if kind == "symlink"
                   else draw(st.booleans()))  # dirs and files: with a user xattr or not
        steps.append((path, kind, mode, mtime, payload))
        if kind in ("dir", "opaque-dir"):
            dirs.append(path)
        if kind == "file":
            files.append(path)
    return steps


def _build(root, steps):
    for path, kind, mode, mtime, payload in steps:
        full = os.path.join(root, path)
        if kind == "file":
            with open(full, "wb") as f:
                f.write(payload)
            os.chmod(full, mode)
        elif kind in ("dir", "opaque-dir"):
            os.mkdir(full)
            os.chmod(full, mode | 0o700)
            if kind == "opaque-dir":
                os.setxattr(full, "trusted.overlay.opaque", b"y")
            if payload is True:
                os.setxattr(full, "user.tag", b"dir")
        elif kind == "symlink":
            os.symlink(payload, full)
        elif kind == "hardlink":
            os.link(os.path.join(root, payload), full)
        elif kind == "fifo":
            os.mkfifo(full, mode & 0o777)
        elif kind == "whiteout":
            os.mknod(full, stat.S_IFCHR, os.makedev(0, 0))
    # times last, deepest first, so creating children does not move them
    for path, kind, mode, mtime, payload in sorted(steps, key=lambda s: -s[0].count("/")):
        if kind in ("file", "dir", "opaque-dir", "fifo"):
            os.utime(os.path.join(root, path), ns=(mtime * 10**9 + 5, mtime * 10**9 + 5))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees())
def test_round_trip(steps):
    work = tempfile.mkdtemp(prefix="layers-prop-")
    try:
        upper = os.path.join(work, "upper")
        os.mkdir(upper)
        _build(upper, steps)
        first, second = io.BytesIO(), io.BytesIO()
        export_layer(upper, first)
        export_layer(upper, second)
        assert first.getvalue() == second.getvalue()
        dest = os.path.join(work, "layer")
        unpack_layer(io.BytesIO(first.getvalue()), dest)
        assert describe(dest) == describe(upper)
        again = io.BytesIO()
        export_layer(dest, again)
        assert again.getvalue() == first.getvalue()
    finally:
        shutil.rmtree(work)


@pytest.mark.skipif(not ROOT, reason="needs root")
def test_round_trip_keeps_owners(tmp_path):
    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    (upper / "d/f").write_text("f")
    os.symlink("f", upper / "d/l")
    os.chown(upper / "d", 1000, 1001)
    os.chown(upper / "d/f", 70000, 70001)
    os.chown(upper / "d/l", 5, 6, follow_symlinks=False)
    data = io.BytesIO()
    export_layer(upper, data)
    unpack_layer(io.BytesIO(data.getvalue()), tmp_path / "layer")
    assert describe(tmp_path / "layer") == describe(upper)
    assert os.lstat(tmp_path / "layer/d/l").st_uid == 5
