"""Other tools read what we store and we load what they write: skopeo and umoci."""

import json
import shutil
import subprocess
import tarfile

import pytest

from tests.store.helpers import assert_clean, layerbox

pytestmark = pytest.mark.skipif(not (shutil.which("skopeo") and shutil.which("umoci")),
                                reason="skopeo and umoci are needed")


def run(*cmd, cwd=None):
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def _image_id(root, name):
    return json.loads(layerbox(root, "image", "inspect", name).stdout)[0]["Id"]


def test_skopeo_inspects_and_copies_out_and_back(busybox_root, tmp_path):
    layerbox(busybox_root, "tag", "busybox", "me/hello:v1")
    info = json.loads(run("skopeo", "inspect", f"oci:{busybox_root}/oci:busybox:latest"))
    assert info["Os"] == "linux" and len(info["Layers"]) == 1
    config = json.loads(run("skopeo", "inspect", "--config", f"oci:{busybox_root}/oci:me/hello:v1"))
    assert config["config"]["Cmd"] == ["sh"]
    out = tmp_path / "dir"
    run("skopeo", "copy", f"oci:{busybox_root}/oci:me/hello:v1", f"dir:{out}")
    assert (out / "manifest.json").exists()
    # back in, through both archive formats skopeo writes
    for transport, name in (("oci-archive", "me/back:oci"), ("docker-archive", "me/back:docker")):
        archive = tmp_path / f"{transport}.tar"
        run("skopeo", "copy", f"dir:{out}", f"{transport}:{archive}:{name}")
        assert layerbox(busybox_root, "load", "-i", str(archive)).stdout == \
            f"Loaded image: {name}\n"
        assert _image_id(busybox_root, name) == _image_id(busybox_root, "busybox")
    assert_clean(busybox_root)


def test_umoci_unpacks_our_image(busybox_root, tmp_path):
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--image", f"{busybox_root}/oci:busybox:latest", str(bundle))
    assert (bundle / "rootfs/bin/busybox").is_file()
    assert (bundle / "rootfs/bin/sh").is_symlink()
    assert json.loads((bundle / "config.json").read_text())["process"]["args"] == ["sh"]
    assert_clean(busybox_root)


def test_load_what_umoci_writes(tmp_path):
    layout = tmp_path / "layout"
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:me/umoci:v1")
    bundle = tmp_path / "b"
    run("umoci", "unpack", "--image", f"{layout}:me/umoci:v1", str(bundle))
    (bundle / "rootfs/hello").write_text("hi\n")
    (bundle / "rootfs/dir").mkdir()
    (bundle / "rootfs/dir/f").write_text("f\n")
    run("umoci", "repack", "--image", f"{layout}:me/umoci:v1", str(bundle))
    bundle2 = tmp_path / "b2"
    run("umoci", "unpack", "--image", f"{layout}:me/umoci:v1", str(bundle2))
    shutil.rmtree(bundle2 / "rootfs/dir")
    run("umoci", "repack", "--image", f"{layout}:me/umoci:v1", str(bundle2))  # a whiteout
    archive = tmp_path / "umoci.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout, arcname=".")
    root = tmp_path / "root"
    assert layerbox(root, "load", "-i", str(archive)).stdout == "Loaded image: me/umoci:v1\n"
    history = layerbox(root, "history", "me/umoci:v1").stdout.splitlines()
    assert len(history) == 3 and "umoci repack" in history[1]
    # and the image round-trips back out to umoci
    run("umoci", "unpack", "--image", f"{root}/oci:me/umoci:v1", str(tmp_path / "again"))
    assert (tmp_path / "again/rootfs/hello").read_text() == "hi\n"
    assert not (tmp_path / "again/rootfs/dir").exists()
    assert_clean(root)
