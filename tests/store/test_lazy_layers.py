"""A committed layer is a blob and a row; its dir is made from the blob on first use.

Real stores and real processes: a container is created (no mount needed), files are
written into its upper dir, ``commit`` stores the layer, and ``create`` of the new
image is its first use (creating a container resolves its lower dirs).
"""

import os
import subprocess
import sys

import pytest

from tests.store.helpers import assert_clean, db_rows, layerbox, store_files
from tests.support.images import REPO_ROOT


def _commit(root, tag: str, make) -> str:
    """Commit a created busybox container whose upper dir MAKE filled; the image id."""
    cid = layerbox(root, "create", "busybox", "true").stdout.strip()
    make(root / "containers" / cid / "upper")
    image = layerbox(root, "commit", cid, tag).stdout.strip()
    layerbox(root, "rm", cid)
    return image


def _files(upper) -> None:
    (upper / "srv" / "deep").mkdir(parents=True)
    (upper / "srv" / "deep" / "big").write_bytes(os.urandom(300_000))
    (upper / "srv" / "small").write_text("small\n")
    os.link(upper / "srv" / "small", upper / "srv" / "small-link")
    os.symlink("deep/big", upper / "srv" / "to-big")
    (upper / "srv" / "empty").touch()


def _new_layer_dirs(root, before: list[str]) -> list[str]:
    return [name for name in store_files(root)["layers"] if name not in before]


def _size_of(root, image: str) -> int:
    [(size,)] = db_rows(root, "SELECT size FROM images WHERE id=?", image)
    return size


def _disk_usage(path) -> int:
    from cli.store.unpack import disk_usage as usage
    return usage(path)


def test_commit_stores_the_blob_and_first_use_makes_the_dir(busybox_root):
    before = store_files(busybox_root)["layers"]
    image = _commit(busybox_root, "lazy:1", _files)
    assert _new_layer_dirs(busybox_root, before) == []        # not unpacked by commit
    assert_clean(busybox_root)                                # system check: fine so
    shown = [layerbox(busybox_root, *args).stdout for args in (
        ["images", "--format", "{{.Size}}", "lazy:1"],
        ["history", "--format", "{{.Size}}", "lazy:1"],
        ["history", "-H=false", "--format", "{{.Size}}", "lazy:1"], ["system", "df"],
        ["image", "inspect", "--format", "{{.Size}} {{.GraphDriver}}", "lazy:1"])]
    size = _size_of(busybox_root, image)

    cid = layerbox(busybox_root, "create", "lazy:1", "true").stdout.strip()
    [made] = _new_layer_dirs(busybox_root, before)
    diff = busybox_root / "layers" / made / "diff"
    assert (diff / "srv" / "deep" / "big").stat().st_size == 300_000
    assert (diff / "srv" / "small-link").stat().st_ino == (diff / "srv" / "small").stat().st_ino
    assert os.readlink(diff / "srv" / "to-big") == "deep/big"
    # Sizes computed from the tar's headers at commit are the unpacked dir's, and every
    # view of them is the same before and after the dir exists.
    [(layer_size,)] = db_rows(busybox_root, "SELECT size FROM layers WHERE chain_id=?",
                              "sha256:" + made)
    assert layer_size == _disk_usage(diff)
    assert _size_of(busybox_root, image) == size
    layerbox(busybox_root, "rm", cid)
    assert [layerbox(busybox_root, *args).stdout for args in (
        ["images", "--format", "{{.Size}}", "lazy:1"],
        ["history", "--format", "{{.Size}}", "lazy:1"],
        ["history", "-H=false", "--format", "{{.Size}}", "lazy:1"], ["system", "df"],
        ["image", "inspect", "--format", "{{.Size}} {{.GraphDriver}}", "lazy:1"])] == shown
    assert_clean(busybox_root)


def test_concurrent_first_uses_unpack_once(busybox_root):
    before = store_files(busybox_root)["layers"]
    _commit(busybox_root, "lazy:1", _files)
    procs = [subprocess.Popen([sys.executable, "-m", "cli.main", "--root", str(busybox_root),
                               "create", "lazy:1", "true"], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        ids.append(out.strip())
    [made] = _new_layer_dirs(busybox_root, before)
    assert sorted(os.listdir(busybox_root / "layers" / made)) == ["diff"]
    assert (busybox_root / "layers" / made / "diff" / "srv" / "small").read_text() == "small\n"
    assert_clean(busybox_root)
    layerbox(busybox_root, "rm", *ids)
    assert_clean(busybox_root)


def test_rmi_of_a_layer_never_unpacked(busybox_root):
    before = store_files(busybox_root)
    image = _commit(busybox_root, "lazy:1", _files)
    size = _size_of(busybox_root, image) - _size_of(busybox_root, db_rows(
        busybox_root, "SELECT image_id FROM tags WHERE name LIKE '%busybox:latest'")[0][0])
    out = layerbox(busybox_root, "rmi", "lazy:1").stdout
    assert out.splitlines()[0] == "Untagged: lazy:1"
    assert f"Deleted: {image}" in out
    assert len([line for line in out.splitlines() if line.startswith("Deleted:")]) == 2
    assert store_files(busybox_root) == before
    assert db_rows(busybox_root, "SELECT count(*) FROM layers") == [(1,)]
    assert size > 300_000
    assert_clean(busybox_root)


def test_system_check_of_a_layer_never_unpacked(busybox_root):
    before = store_files(busybox_root)["layers"]
    image = _commit(busybox_root, "lazy:1", _files)
    assert _new_layer_dirs(busybox_root, before) == []
    check = layerbox(busybox_root, "system", "check", check=False)
    assert (check.returncode, check.stdout) == (0, "")
    # Its blob is still checked against its digest, as every blob is.
    layer_digest = db_rows(busybox_root, "SELECT digest FROM image_layers WHERE image_id=? "
                           "ORDER BY position DESC LIMIT 1", image)[0][0]
    blob = busybox_root / "oci/blobs/sha256" / layer_digest[7:]
    blob.write_bytes(blob.read_bytes()[:-10])
    check = layerbox(busybox_root, "system", "check", check=False)
    assert check.returncode == 1
    assert check.stdout.startswith(f"blob {layer_digest}: content hashes to ")


@pytest.mark.parametrize("damage", ["flipped byte", "truncated"])
def test_corrupt_blob_on_first_use_is_a_one_line_error(busybox_root, damage):
    before = store_files(busybox_root)["layers"]
    image = _commit(busybox_root, "lazy:1", _files)
    layer_digest = db_rows(busybox_root, "SELECT digest FROM image_layers WHERE image_id=? "
                           "ORDER BY position DESC LIMIT 1", image)[0][0]
    blob = busybox_root / "oci/blobs/sha256" / layer_digest[7:]
    data = bytearray(blob.read_bytes())
    if damage == "truncated":
        del data[len(data) // 2:]
    else:
        data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    for _ in range(2):   # and again: the failed first use left nothing half-made
        result = layerbox(busybox_root, "create", "--name", "c", "lazy:1", "true", check=False)
        assert result.returncode != 0
        assert result.stderr.startswith("Error: "), result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert layer_digest in result.stderr
        assert _new_layer_dirs(busybox_root, before) == []
        assert store_files(busybox_root)["tmp"] == []
        assert layerbox(busybox_root, "ps", "-aq").stdout == ""
        assert db_rows(busybox_root, "SELECT count(*) FROM leases") == [(0,)]
    # The damage is the blob's, and check says so; the other image is untouched.
    check = layerbox(busybox_root, "system", "check", check=False)
    assert check.stdout.splitlines() == [
        f"blob {layer_digest}: content hashes to {check.stdout.split()[-1]}"]
    cid = layerbox(busybox_root, "create", "busybox", "true").stdout.strip()
    layerbox(busybox_root, "rm", cid)


def test_a_tar_the_scan_cannot_vouch_for_is_unpacked_at_commit(busybox_root):
    """A symlink climbing out of the root is refused by unpacking: at commit, as before."""
    before = store_files(busybox_root)

    def escaping(upper):
        (upper / "a").mkdir()
        os.symlink("../../../etc/passwd", upper / "a" / "out")

    cid = layerbox(busybox_root, "create", "busybox", "true").stdout.strip()
    escaping(busybox_root / "containers" / cid / "upper")
    result = layerbox(busybox_root, "commit", cid, "bad:1", check=False)
    assert result.returncode != 0
    assert result.stderr.startswith("Error: ") and "leaves the root" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    layerbox(busybox_root, "rm", cid)
    assert store_files(busybox_root) == before
    assert_clean(busybox_root)
