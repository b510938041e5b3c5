"""The header scan that stands in for unpacking at commit (cli/store/scan.py).

What must hold: it never vouches for a tar that unpacking refuses, and for one it
vouches for, its size is the unpacked dir's Docker size; our exporter's tars are the
plain kind it vouches for, whatever the pieces the stream arrives in.
"""

from __future__ import annotations

import io
import tarfile
import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.store.scan import LayerScan
from cli.store.unpack import disk_usage as _disk_usage
from overlayfs.layer_tar import LayerError, export_layer, unpack_layer
from tests.layers.test_round_trip_property import _build, trees
from tests.store.helpers import make_tar


def _scan(data: bytes, piece: int) -> LayerScan:
    scan = LayerScan()
    for start in range(0, len(data), piece):
        scan.feed(data[start:start + piece])
    scan.finish()
    return scan


def _unpacked_size(data: bytes) -> int | None:
    """Docker's size of DATA unpacked; None if unpacking refuses it."""
    work = tempfile.mkdtemp(prefix="scan-")
    try:
        unpack_layer(io.BytesIO(data), os.path.join(work, "diff"))
        return _disk_usage(os.path.join(work, "diff"))
    except LayerError:
        return None
    finally:
        shutil.rmtree(work)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees(), st.sampled_from([1, 7, 512, 513, 4096, 1 << 20]))
def test_exported_tars_are_plain_and_sized_as_unpacked(steps, piece):
    work = tempfile.mkdtemp(prefix="scan-prop-")
    try:
        upper = os.path.join(work, "upper")
        os.mkdir(upper)
        _build(upper, steps)
        out = io.BytesIO()
        export_layer(upper, out)
        data = out.getvalue()
    finally:
        shutil.rmtree(work)
    scan = _scan(data, piece)
    size = _unpacked_size(data)
    assert size is not None
    assert scan.plain
    assert scan.size == size


def test_a_tree_with_every_kind_sizes_as_unpacked(tmp_path):
    upper = tmp_path / "upper"
    (upper / "d" / ("n" * 120)).mkdir(parents=True)       # a PAX path below
    (upper / "d" / ("n" * 120) / "f").write_bytes(b"x" * 1000)
    (upper / "a").write_bytes(os.urandom(70_000))
    os.link(upper / "a", upper / "a2")
    os.link(upper / "a", upper / "d" / "a3")
    os.symlink("t" * 150, upper / "long-link")             # a PAX linkpath, 150 bytes
    os.symlink(os.fsdecode(b"caf\xc3\xa9-\xff"), upper / "odd-link")
    (upper / os.fsdecode(b"raw\xff")).write_bytes(b"12345")
    os.mkfifo(upper / "fifo")
    (upper / "empty").touch()
    if os.geteuid() == 0:
        os.mknod(upper / "gone", 0o20000, os.makedev(0, 0))
        (upper / "opaque").mkdir()
        os.setxattr(upper / "opaque", "trusted.overlay.opaque", b"y")
        (upper / "opaque" / "kept").write_text("k")
    out = io.BytesIO()
    export_layer(upper, out)
    scan = _scan(out.getvalue(), 1000)
    assert scan.plain
    assert scan.size == _unpacked_size(out.getvalue()) == 70_000 + 1000 + 150 + 7 + 5 + (
        1 if os.geteuid() == 0 else 0)


REFUSED_OR_ODD = {
    "symlink-escape": [("a", "dir"), ("a/out", "sym", "../../etc")],
    "through-symlink": [("l", "sym", "d"), ("l/f", "file", b"x")],
    "below-a-file": [("f", "file", b"x"), ("f/g", "file", b"y")],
    "hardlink-not-earlier": [("h", "link", "later"), ("later", "file", b"x")],
    "duplicate": [("f", "file", b"x"), ("f", "file", b"yy")],
    "whiteout-of-whiteout": [(".wh..wh.x", "file", b"")],
    "dotdot": [("../x", "file", b"x")],
    "absolute": [("/x", "file", b"x")],
}


@pytest.mark.parametrize("case", sorted(REFUSED_OR_ODD))
def test_the_scan_never_vouches_for_what_it_cannot_size(case):
    data = make_tar(REFUSED_OR_ODD[case])
    scan = _scan(data, 512)
    assert not scan.plain
    if case == "duplicate":   # unpacks fine (last one wins): left to a real unpack
        assert _unpacked_size(data) == 2
    elif case != "whiteout-of-whiteout" or os.geteuid() == 0:
        assert _unpacked_size(data) is None


def test_a_truncated_tar_is_not_plain():
    data = make_tar([("f", "file", b"x" * 5000)])
    assert _scan(data, 512).plain
    assert not _scan(data[:1536], 512).plain


@pytest.mark.parametrize("size", ["x", "-5"])
def test_a_pax_size_that_is_no_size_is_not_plain(size):
    member = tarfile.TarInfo("f")
    member.size = 1
    member.pax_headers = {"size": size}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(member, io.BytesIO(b"x"))
    assert not _scan(out.getvalue(), 512).plain
