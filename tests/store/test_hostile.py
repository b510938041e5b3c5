"""Hostile and broken input: clear one-line errors, and the store is left as it was."""

import gzip
import io
import json
import os
import tarfile

import pytest

from tests.store.helpers import assert_clean, layerbox, make_tar, store_files

HOSTILE = {
    "dotdot": [("../evil", "file", b"x")],
    "dotdot-deep": [("a", "dir"), ("a/../../evil", "file", b"x")],
    "write-through-symlink": [("lnk", "sym", "../../.."), ("lnk/evil", "file", b"x")],
    "symlink-dir-escape": [("d", "sym", "/"), ("d/evil", "file", b"x")],
    "hardlink-outside": [("h", "link", "../../../../etc/passwd")],
    "whiteout-of-whiteout": [("a", "dir"), ("a/.wh..wh.x", "file", b"")],
}


def _assert_one_line_error(result):
    assert result.returncode != 0
    assert result.stderr.startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def _evil_anywhere(root) -> list[str]:
    found = []
    for base in (root, root.parent):
        for dirpath, dirnames, filenames in os.walk(base):
            found += [os.path.join(dirpath, n) for n in filenames if n == "evil"]
    return found


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layer_refused(busybox_root, case):
    before = store_files(busybox_root)
    result = layerbox(busybox_root, "import", "-", f"evil:{case}",
                      input=make_tar(HOSTILE[case]), check=False)
    _assert_one_line_error(result)
    assert store_files(busybox_root) == before
    assert _evil_anywhere(busybox_root) == []
    assert "evil" not in layerbox(busybox_root, "images").stdout
    assert_clean(busybox_root)


def _busybox_like() -> bytes:
    import random
    noise = random.Random(0).randbytes(300_000)  # incompressible: truncation cuts real data
    return make_tar([("etc", "dir"), ("etc/motd", "file", noise)])


def _bad_deflate_block(data: bytes) -> bytes:
    """A valid gzip header, then a deflate stream with its first block header damaged
    (ISA-L raises its own error type there, not zlib.error)."""
    damaged = bytearray(data)
    damaged[12] ^= 0x55
    return bytes(damaged)


BROKEN = {
    "corrupt-gzip": lambda: gzip.compress(_busybox_like(), mtime=0)[:40] + b"\0garbage" * 1000,
    "bad-deflate-block": lambda: _bad_deflate_block(gzip.compress(_busybox_like(), mtime=0)),
    "truncated-gzip": lambda: gzip.compress(_busybox_like(), mtime=0)[:100_000],
    "truncated-tar": lambda: _busybox_like()[:150_000],
    "not-a-tar": lambda: b"hello world, this is not a tar file at all\n" * 50,
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_import(busybox_root, case):
    before = store_files(busybox_root)
    result = layerbox(busybox_root, "import", "-", f"broken:{case}", input=BROKEN[case](),
                      check=False)
    _assert_one_line_error(result)
    assert store_files(busybox_root) == before
    assert_clean(busybox_root)


@pytest.mark.parametrize("case", ["truncated", "garbage", "empty", "no-manifest"])
def test_broken_archive_load(busybox_root, tmp_path, case):
    archive = tmp_path / "a.tar"
    layerbox(busybox_root, "save", "-o", str(archive), "busybox")
    data = archive.read_bytes()
    data = {"truncated": data[:len(data) // 2], "garbage": b"\x00\x01garbage" * 100,
            "empty": b"", "no-manifest": make_tar([("x", "file", b"y")])}[case]
    fresh = tmp_path / "fresh"
    _assert_one_line_error(layerbox(fresh, "load", input=data, check=False))
    assert store_files(fresh) == {"blobs": [], "layers": [], "tmp": []}
    assert_clean(fresh)


def _rewrite_tar(src: bytes, edit) -> bytes:
    """Copy an archive, letting EDIT(name, data) replace member contents."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(src)) as tin, tarfile.open(fileobj=out, mode="w") as tout:
        for member in tin.getmembers():
            data = tin.extractfile(member).read() if member.isfile() else None
            if data is not None:
                data = edit(member.name, data)
                member.size = len(data)
            tout.addfile(member, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def test_archive_with_a_damaged_deflate_stream(busybox_root, tmp_path):
    archive = tmp_path / "a.tar"
    layerbox(busybox_root, "save", "-o", str(archive), "busybox")
    # A layer compressed (load sniffs the compression), its deflate stream damaged.
    damaged = _rewrite_tar(archive.read_bytes(), lambda name, data: _bad_deflate_block(
        gzip.compress(data, mtime=0)) if name.endswith("layer.tar") else data)
    assert damaged != archive.read_bytes()
    fresh = tmp_path / "fresh"
    _assert_one_line_error(layerbox(fresh, "load", input=damaged, check=False))
    assert_clean(fresh)


def test_archive_blob_digest_mismatch(busybox_root, tmp_path):
    archive = tmp_path / "oci.tar"
    layerbox(busybox_root, "save", "--format", "oci-archive", "-o", str(archive), "busybox")
    manifest_digest = json.loads(tarfile.open(archive).extractfile("index.json").read())[
        "manifests"][0]["digest"]
    manifest = json.loads(tarfile.open(archive).extractfile(
        f"blobs/sha256/{manifest_digest[7:]}").read())
    layer_name = f"blobs/sha256/{manifest['layers'][0]['digest'][7:]}"
    # Same gzip stream, one byte of content flipped: the blob no longer matches its digest.
    tampered = _rewrite_tar(archive.read_bytes(), lambda name, data: gzip.compress(
        gzip.decompress(data).replace(b"root:x:0:0", b"root::0:0:"), mtime=0)
        if name == layer_name else data)
    fresh = tmp_path / "fresh"
    result = layerbox(fresh, "load", input=tampered, check=False)
    _assert_one_line_error(result)
    assert "digest mismatch" in result.stderr
    assert store_files(fresh) == {"blobs": [], "layers": [], "tmp": []}
    assert_clean(fresh)


def test_docker_archive_diff_id_mismatch(busybox_root, tmp_path):
    archive = tmp_path / "d.tar"
    layerbox(busybox_root, "save", "-o", str(archive), "busybox")
    tampered = _rewrite_tar(archive.read_bytes(), lambda name, data: data.replace(
        b"root:x:0:0", b"root::0:0:") if name.endswith("layer.tar") else data)
    fresh = tmp_path / "fresh"
    result = layerbox(fresh, "load", input=tampered, check=False)
    _assert_one_line_error(result)
    assert store_files(fresh) == {"blobs": [], "layers": [], "tmp": []}
    assert_clean(fresh)


def test_corrupt_stored_blob_is_detected(busybox_root, tmp_path):
    blobs = busybox_root / "oci/blobs/sha256"
    layer_blob = max(blobs.iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(layer_blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer_blob.write_bytes(bytes(data))
    check = layerbox(busybox_root, "system", "check", check=False)
    assert check.returncode == 1
    assert check.stdout == (f"blob sha256:{layer_blob.name}: content hashes to "
                            f"{check.stdout.split()[-1]}\n")
    save = layerbox(busybox_root, "save", "-o", str(tmp_path / "x.tar"), "busybox", check=False)
    _assert_one_line_error(save)
    assert not (tmp_path / "x.tar").exists()


def test_check_reports_database_file_mismatches(busybox_root):
    import shutil
    # A container made the layer's dir; without one, a missing dir is only "not unpacked
    # yet" (it is made from the blob on first use: tests/store/test_lazy_layers.py).
    created = layerbox(busybox_root, "create", "busybox", "true")
    [layer_dir] = (busybox_root / "layers").iterdir()
    shutil.rmtree(layer_dir)
    (busybox_root / "layers" / ("0" * 64)).mkdir()
    check = layerbox(busybox_root, "system", "check", check=False)
    assert check.returncode == 1
    lines = check.stdout.splitlines()
    assert any("is missing" in line for line in lines)
    assert any("is not in the database" in line for line in lines)
    layerbox(busybox_root, "rm", created.stdout.strip())
