"""The Store interface other parts use (write_layer → create_image → tag), on a real store."""

import io
import json
import os
import stat

import pytest

from cli.errors import UserError
from cli.store import NoSuchImage, Store
from tests.store.helpers import assert_clean, layerbox, make_tar, store_files


def _config(diff_ids, history):
    return {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
            "author": "Ann <ann@x.org>", "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history}


@pytest.fixture
def two_layer(busybox_root):
    """busybox + a layer that adds /hello, deletes /etc/motd and makes /tmp opaque."""
    store = Store.open(busybox_root)
    base = store.resolve_image("busybox")
    top_tar = make_tar([("etc", "dir"), ("etc/.wh.motd", "file", b""), ("hello", "file", b"hi\n"),
                        ("tmp", "dir"), ("tmp/.wh..wh..opq", "file", b"")])
    layer = store.write_layer(io.BytesIO(top_tar), parent=base.layers[-1])
    history = list(base.config["history"]) + [
        {"created": "2024-01-01T00:00:00Z", "created_by": "sh", "comment": "add hello",
         "author": "Ann <ann@x.org>"},
        {"created": "2024-01-01T00:00:01Z", "created_by": "/bin/sh -c #(nop) CMD [\"sh\"]",
         "empty_layer": True}]
    image = store.create_image(config=_config([l.diff_id for l in base.layers] + [layer.diff_id],
                                              history), layers=[*base.layers, layer])
    store.tag(image, "me/hello:v1")
    yield store, base, store.get_image(image.id)
    store.close()


def test_write_layer_create_image_tag(two_layer):
    store, base, image = two_layer
    assert image.repo_tags == ("me/hello:v1",)
    assert image.id.startswith("sha256:") and len(image.layers) == 2
    assert image.layers[0] == base.layers[0]
    top = image.layers[1]
    assert top.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert top.chain_id != top.diff_id  # a real chain id (parent given)
    dirs = store.layer_dirs(image)
    assert dirs[1] == store.layer_dirs(base)[0] and len(dirs) == 2  # TOP FIRST, shared bottom
    top_dir = dirs[0]
    assert (top_dir / "hello").read_bytes() == b"hi\n"
    st = os.lstat(top_dir / "etc/motd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0  # overlay whiteout
    assert store.resolve_image("me/hello:v1").id == image.id
    assert store.resolve_image(image.id[7:19]).id == image.id
    assert store.resolve_image(image.id).id == image.id
    assert store.resolve_image(f"me/hello@{image.manifest_digest}").id == image.id
    assert store.image_config(image)["author"] == "Ann <ann@x.org>"
    with pytest.raises(NoSuchImage, match="No such image: nosuch"):
        store.resolve_image("nosuch")


def test_history_and_inspect_of_committed_image(two_layer):
    store, base, image = two_layer
    root = store.root
    lines = layerbox(root, "history", "me/hello:v1").stdout.splitlines()
    assert len(lines) == 4
    assert lines[1].startswith(image.id[7:19]) and lines[1].endswith(" 0B")
    assert lines[2].startswith("<missing>") and "add hello" in lines[2]
    assert lines[3].startswith("<missing>") and "Imported from -" in lines[3]
    no_trunc = layerbox(root, "history", "--no-trunc", "-H=false", "me/hello:v1").stdout
    assert image.id in no_trunc and "2024-01-01T00:00:00Z" in no_trunc
    [info] = json.loads(layerbox(root, "image", "inspect", "me/hello:v1").stdout)
    assert info["Author"] == "Ann <ann@x.org>" and info["Comment"] == "add hello"
    assert info["RootFS"]["Layers"] == [l.diff_id for l in image.layers]


def test_write_layer_without_parent_is_rehomed(busybox_root):
    with Store.open(busybox_root) as store:
        base = store.resolve_image("busybox")
        layer = store.write_layer(io.BytesIO(make_tar([("x", "file", b"1")])))
        assert layer.chain_id == layer.diff_id
        image = store.create_image(
            config=_config([base.layers[0].diff_id, layer.diff_id], []),
            layers=[*base.layers, layer])
        assert image.layers[1].chain_id != layer.diff_id
        assert (store.layer_dirs(image)[0] / "x").read_bytes() == b"1"
    assert_clean(busybox_root)
    # the provisional bottom-layer dir was collected when the store closed
    assert len(store_files(busybox_root)["layers"]) == 2


def test_create_image_checks_diff_ids(busybox_root):
    with Store.open(busybox_root) as store:
        base = store.resolve_image("busybox")
        with pytest.raises(UserError, match="diff_ids"):
            store.create_image(config=_config(["sha256:" + "0" * 64], []), layers=list(base.layers))


def test_tag_moves_and_old_image_dangles(two_layer):
    store, base, image = two_layer
    store.tag(base, "me/hello:v1")
    assert store.resolve_image("me/hello:v1").id == base.id
    assert store.get_image(image.id).repo_tags == ()
    out = layerbox(store.root, "images").stdout.splitlines()
    assert any(line.split()[:2] == ["<none>", "<none>"] for line in out)


def test_rmi_removes_only_unshared_layers(two_layer):
    store, base, image = two_layer
    root = store.root
    store.close()
    out = layerbox(root, "rmi", "me/hello:v1").stdout.splitlines()
    assert out[0] == "Untagged: me/hello:v1"
    assert out[1] == f"Deleted: {image.id}"
    assert out[2:] == [f"Deleted: {image.layers[1].chain_id}"]  # the bottom stays for busybox
    assert store_files(root)["layers"] == [base.layers[0].chain_id[7:]]
    assert_clean(root)


def test_save_load_multi_layer(two_layer, tmp_path):
    store, base, image = two_layer
    for fmt in ("docker-archive", "oci-archive"):
        archive = tmp_path / f"{fmt}.tar"
        layerbox(store.root, "save", "--format", fmt, "-o", str(archive), "me/hello:v1")
        fresh = tmp_path / f"fresh-{fmt}"
        assert layerbox(fresh, "load", "-i", str(archive)).stdout == "Loaded image: me/hello:v1\n"
        with Store.open(fresh) as loaded:
            got = loaded.resolve_image("me/hello:v1")
            assert got.id == image.id
            assert [l.chain_id for l in got.layers] == [l.chain_id for l in image.layers]
            assert os.path.exists(loaded.layer_dirs(got)[0] / "hello")
        assert_clean(fresh)


def test_load_docker25_archive_with_oci_layout_inside(busybox_root, tmp_path):
    """Docker >= 25 writes manifest.json whose paths point into an OCI layout's blobs."""
    import tarfile
    oci = tmp_path / "oci.tar"
    layerbox(busybox_root, "save", "--format", "oci-archive", "-o", str(oci), "busybox")
    with tarfile.open(oci) as tar:
        index = json.loads(tar.extractfile("index.json").read())
        manifest = json.loads(tar.extractfile(
            "blobs/sha256/" + index["manifests"][0]["digest"][7:]).read())
        members = [(m, tar.extractfile(m).read() if m.isfile() else None)
                   for m in tar.getmembers()]
    docker_manifest = [{"Config": "blobs/sha256/" + manifest["config"]["digest"][7:],
                        "RepoTags": ["me/d25:latest"],
                        "Layers": ["blobs/sha256/" + l["digest"][7:] for l in manifest["layers"]]}]
    combined = tmp_path / "d25.tar"
    with tarfile.open(combined, "w") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
        data = json.dumps(docker_manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    fresh = tmp_path / "fresh"
    assert layerbox(fresh, "load", "-i", str(combined)).stdout == "Loaded image: me/d25:latest\n"
    [a] = json.loads(layerbox(fresh, "image", "inspect", "me/d25").stdout)
    [b] = json.loads(layerbox(busybox_root, "image", "inspect", "busybox").stdout)
    assert a["Id"] == b["Id"]
    assert_clean(fresh)
