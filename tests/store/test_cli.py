"""The image commands end to end through the real CLI, on a real store."""

import gzip
import json
import re
import subprocess

from tests.store.helpers import (assert_clean, db_rows, index_names, layerbox,
                                 store_files)
from tests.support.images import REPO_ROOT


def test_images_lists_busybox(busybox_root):
    out = layerbox(busybox_root, "images").stdout.splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    fields = re.split(r"\s{3,}", out[1])
    assert fields[:2] == ["busybox", "latest"]
    assert re.fullmatch(r"[0-9a-f]{12}", fields[2])
    assert fields[3].endswith("ago")
    assert re.fullmatch(r"\d+(\.\d+)?MB", fields[4])
    quiet = layerbox(busybox_root, "images", "-q").stdout.split()
    assert quiet == [fields[2]]
    full = layerbox(busybox_root, "images", "-q", "--no-trunc").stdout.split()
    assert full[0].startswith("sha256:" + fields[2])
    rows = [json.loads(line) for line in
            layerbox(busybox_root, "images", "--format", "json").stdout.splitlines()]
    assert rows[0]["Repository"] == "busybox" and rows[0]["Tag"] == "latest"
    assert layerbox(busybox_root, "images", "nosuch").stdout.splitlines()[1:] == []
    for pattern in ("busybox:latest", "busybox", "docker.io/library/busybox", "busy*"):
        assert len(layerbox(busybox_root, "images", pattern).stdout.splitlines()) == 2
    assert len(layerbox(busybox_root, "images", "busybox:other").stdout.splitlines()) == 1


def test_inspect_and_history(busybox_root):
    [info] = json.loads(layerbox(busybox_root, "image", "inspect", "busybox").stdout)
    assert info["RepoTags"] == ["busybox:latest"]
    assert info["Config"]["Cmd"] == ["sh"]
    assert info["Os"] == "linux" and info["Architecture"]
    assert info["RootFS"]["Type"] == "layers" and len(info["RootFS"]["Layers"]) == 1
    assert info["Comment"] == "Imported from -"
    assert info["Size"] > 1_000_000
    fmt = layerbox(busybox_root, "image", "inspect", "-f", "{{.Config.Cmd}} {{json .RepoTags}}",
                   "busybox").stdout
    assert fmt == '[sh] ["busybox:latest"]\n'
    missing = layerbox(busybox_root, "image", "inspect", "nosuch", check=False)
    assert missing.returncode == 1 and "No such image: nosuch" in missing.stderr
    history = layerbox(busybox_root, "history", "busybox").stdout.splitlines()
    assert history[0].split()[:2] == ["IMAGE", "CREATED"]
    assert info["Id"][7:19] in history[1] and "Imported from -" in history[1]


def test_import_changes_message_stdin_and_zstd(busybox_root, busybox_tar):
    data = gzip.compress(busybox_tar.read_bytes(), mtime=0)
    out = layerbox(busybox_root, "import", "-m", "hello", "-c", "ENV A=b", "-c",
                   "WORKDIR /w", "--compression", "zstd", "-", "me/bb:zst", input=data)
    image_id = out.stdout.strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image_id)
    [info] = json.loads(layerbox(busybox_root, "image", "inspect", "me/bb:zst").stdout)
    assert info["Id"] == image_id and info["Comment"] == "hello"
    assert info["Config"]["Env"] == ["A=b"] and info["Config"]["WorkingDir"] == "/w"
    [bb] = json.loads(layerbox(busybox_root, "image", "inspect", "busybox").stdout)
    assert info["RootFS"]["Layers"] == bb["RootFS"]["Layers"]  # same content, same diff_id
    manifest_digest = db_rows(busybox_root, "SELECT manifest_digest FROM images WHERE id=?",
                              image_id)[0][0]
    manifest = json.loads((busybox_root / "oci/blobs/sha256" / manifest_digest[7:]).read_text())
    assert manifest["layers"][0]["mediaType"].endswith("tar+zstd")
    assert len(store_files(busybox_root)["layers"]) == 1  # shared unpacked layer
    bad = layerbox(busybox_root, "import", "-c", "RUN x", "-", input=data, check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("Error: run is not a valid change")
    assert_clean(busybox_root)


def test_import_is_deterministic(busybox_root, busybox_tar):
    [bb] = json.loads(layerbox(busybox_root, "image", "inspect", "busybox").stdout)
    layerbox(busybox_root, "import", str(busybox_tar), "again")
    [again] = json.loads(layerbox(busybox_root, "image", "inspect", "again").stdout)
    assert again["RootFS"] == bb["RootFS"]
    layer_digests = db_rows(busybox_root, "SELECT DISTINCT digest FROM image_layers")
    assert len(layer_digests) == 1  # same bytes, same gzip blob


def test_tag_and_rmi(busybox_root):
    before = store_files(busybox_root)
    layerbox(busybox_root, "tag", "busybox", "me/hello:v1")
    layerbox(busybox_root, "tag", "busybox:latest", "127.0.0.1:5000/x")
    assert index_names(busybox_root) == ["127.0.0.1:5000/x:latest", "busybox:latest",
                                         "me/hello:v1"]
    out = layerbox(busybox_root, "rmi", "me/hello:v1").stdout
    assert out == "Untagged: me/hello:v1\n"
    conflict = layerbox(busybox_root, "rmi", layerbox(busybox_root, "images", "-q").stdout.split()[0],
                        check=False)
    assert conflict.returncode == 1 and "referenced in multiple repositories" in conflict.stderr
    bad = layerbox(busybox_root, "tag", "busybox", "Bad/Name", check=False)
    assert "invalid reference format" in bad.stderr and bad.returncode == 1
    image_id = db_rows(busybox_root, "SELECT id FROM images")[0][0]
    out = layerbox(busybox_root, "rmi", "-f", image_id[7:19]).stdout.splitlines()
    assert out[:2] == ["Untagged: 127.0.0.1:5000/x:latest", "Untagged: busybox:latest"]
    assert out[2] == f"Deleted: {image_id}" and out[3].startswith("Deleted: sha256:")
    assert store_files(busybox_root) == {"blobs": [], "layers": [], "tmp": []}
    assert before["layers"]
    assert layerbox(busybox_root, "images", "-q").stdout == ""
    assert index_names(busybox_root) == []
    assert_clean(busybox_root)


def test_rmi_refuses_image_used_by_container(busybox_root):
    image_id = db_rows(busybox_root, "SELECT id FROM images")[0][0]
    _insert_container(busybox_root, image_id)  # as cli/containers.py records a container
    out = layerbox(busybox_root, "rmi", "busybox", check=False)
    assert out.returncode == 1
    assert out.stderr.startswith('Error: conflict: unable to remove repository reference '
                                 '"busybox" (must force) - container c0ffee000000 is using its '
                                 'referenced image ' + image_id[7:19])
    forced = layerbox(busybox_root, "rmi", "-f", "busybox").stdout
    assert forced == "Untagged: busybox:latest\n"  # kept for the container, now dangling
    assert layerbox(busybox_root, "images").stdout.splitlines()[1].split()[:2] == ["<none>",
                                                                                   "<none>"]
    prune = layerbox(busybox_root, "image", "prune", "-f").stdout
    assert prune == "Total reclaimed space: 0B\n"
    assert_clean(busybox_root)


def _insert_container(root, image_id):
    import sqlite3
    conn = sqlite3.connect(root / "layerbox.db")
    with conn:
        conn.execute("INSERT INTO containers VALUES (?, 'lab', ?, '2024-01-01T00:00:00Z', '{}')",
                     ("c0ffee" + "0" * 58, image_id))
    conn.close()


def test_prune(busybox_root, busybox_tar):
    layerbox(busybox_root, "import", "-m", "other", str(busybox_tar))  # dangling
    layerbox(busybox_root, "import", "-m", "kept", str(busybox_tar), "kept")
    out = layerbox(busybox_root, "image", "prune", "-f").stdout.splitlines()
    assert out[0] == "Deleted Images:" and out[1].startswith("deleted: sha256:")
    assert out[-1] == "Total reclaimed space: 0B"  # the layer is shared, nothing reclaimed
    assert len(db_rows(busybox_root, "SELECT id FROM images")) == 2
    out = layerbox(busybox_root, "image", "prune", "-a", "-f").stdout.splitlines()
    assert "untagged: busybox:latest" in out and "untagged: kept:latest" in out
    assert re.fullmatch(r"Total reclaimed space: \d+(\.\d+)?MB", out[-1])
    assert store_files(busybox_root) == {"blobs": [], "layers": [], "tmp": []}
    assert_clean(busybox_root)


def test_save_load_roundtrip(busybox_root, tmp_path):
    layerbox(busybox_root, "tag", "busybox", "me/hello:v1")
    archive = tmp_path / "bb.tar"
    layerbox(busybox_root, "save", "-o", str(archive), "busybox", "me/hello:v1")
    names = subprocess.run(["tar", "tf", str(archive)], capture_output=True, text=True,
                           check=True).stdout.split()
    assert "manifest.json" in names and "repositories" in names
    fresh = tmp_path / "fresh"
    out = layerbox(fresh, "load", "-i", str(archive)).stdout
    assert out == "Loaded image: busybox:latest\nLoaded image: me/hello:v1\n"
    [a] = json.loads(layerbox(busybox_root, "image", "inspect", "busybox").stdout)
    [b] = json.loads(layerbox(fresh, "image", "inspect", "busybox").stdout)
    assert a["Id"] == b["Id"] and a["RootFS"] == b["RootFS"]
    # stdin, and an OCI archive
    oci = tmp_path / "bb-oci.tar"
    layerbox(busybox_root, "save", "--format", "oci-archive", "-o", str(oci), "busybox")
    fresh2 = tmp_path / "fresh2"
    out = layerbox(fresh2, "load", input=oci.read_bytes()).stdout
    assert out == "Loaded image: busybox:latest\n"
    assert db_rows(fresh2, "SELECT manifest_digest FROM images") == \
        db_rows(busybox_root, "SELECT manifest_digest FROM images")
    for root in (fresh, fresh2):
        assert_clean(root)


def test_images_is_fast(busybox_root):
    import time
    start = time.perf_counter()
    subprocess.run([str(REPO_ROOT / ".venv/bin/layerbox"), "--root", str(busybox_root),
                    "images"], check=True, capture_output=True)
    assert time.perf_counter() - start < 1.0  # generous for loaded CI machines; ~0.1 s idle
