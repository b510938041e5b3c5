"""Push and pull against a real registry (no auth); skopeo checks both directions."""

from __future__ import annotations

import json

import pytest

from cli.store.imports import host_architecture
from tests.registry.helpers import (get, inspect, manifest_digest, put_manifest, sha256, skopeo,
                                    skopeo_inspect, upload_blob)
from tests.support.images import layerbox

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]


def test_commit_round_trip_is_bit_identical(registry, busybox_root, tmp_path):
    """A committed image pushed and pulled back into an empty store keeps id and manifest digest."""
    root = busybox_root
    name = f"{registry.host}/me/x"
    # A second layer on top of busybox, made by the store (as commit does).
    from cli.store.store import Store
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hello")
        info.size, info.mtime = 6, 0
        tar.addfile(info, io.BytesIO(b"hello\n"))
    with Store.open(root) as store:
        base = store.resolve_image("busybox")
        layer = store.write_layer(io.BytesIO(buf.getvalue()), parent=base.layers[-1])
        config = json.loads(json.dumps(base.config))
        config["rootfs"]["diff_ids"].append(layer.diff_id)
        config["history"].append({"created": "2026-01-01T00:00:00Z", "comment": "add hello"})
        image = store.create_image(config=config, layers=[*base.layers, layer])
        store.tag(image, "me/x:v1")
    layerbox(root, "tag", "me/x:v1", name)

    out = layerbox(root, "push", name).stdout.splitlines()
    pushed = manifest_digest(root, name)
    top, bottom = image.layers[1], image.layers[0]
    assert out == [
        "Using default tag: latest",
        f"The push refers to repository [{name}]",
        f"{short(top.diff_id)}: Preparing",
        f"{short(bottom.diff_id)}: Preparing",
        f"{short(top.diff_id)}: Pushed",
        f"{short(bottom.diff_id)}: Pushed",
        f"latest: digest: {pushed} size: {len(get(registry.host, f'/v2/me/x/manifests/{pushed}', OCI_MANIFEST))}",
    ]
    remote = skopeo_inspect(f"{name}:latest")
    assert remote["Digest"] == pushed
    assert remote["Layers"] == [layer.digest for layer in image.layers]

    empty = tmp_path / "empty-root"
    out = layerbox(empty, "pull", name).stdout.splitlines()
    assert out == [
        "Using default tag: latest",
        "latest: Pulling from me/x",
        f"{short(bottom.digest)}: Pulling fs layer",
        f"{short(top.digest)}: Pulling fs layer",
        f"{short(bottom.digest)}: Verifying Checksum",
        f"{short(bottom.digest)}: Download complete",
        f"{short(bottom.digest)}: Pull complete",
        f"{short(top.digest)}: Verifying Checksum",
        f"{short(top.digest)}: Download complete",
        f"{short(top.digest)}: Pull complete",
        f"Digest: {pushed}",
        f"Status: Downloaded newer image for {name}:latest",
        f"{name}:latest",
    ]
    mine, theirs = inspect(root, name), inspect(empty, name)
    assert theirs["Id"] == mine["Id"] == image.id
    assert theirs["RootFS"] == mine["RootFS"]
    assert manifest_digest(empty, name) == pushed
    assert theirs["RepoDigests"] == [f"{name}@{pushed}"]
    layerbox(empty, "system", "check")

    # Again: nothing is downloaded.
    out = layerbox(empty, "pull", f"{name}:latest").stdout.splitlines()
    assert f"{short(bottom.digest)}: Already exists" in out
    assert f"Status: Image is up to date for {name}:latest" in out
    # Pushing again: the registry has every blob.
    out = layerbox(root, "push", f"{name}:latest").stdout
    assert f"{short(top.diff_id)}: Layer already exists" in out


def test_tagged_busybox_push_mount_and_pull_by_digest(registry, busybox_root, tmp_path):
    first, second = f"{registry.host}/demo/bb:v1", f"{registry.host}/elsewhere/bb:v2"
    layerbox(busybox_root, "tag", "busybox", first)
    layerbox(busybox_root, "push", first)
    layerbox(busybox_root, "tag", "busybox", second)
    out = layerbox(busybox_root, "push", second).stdout
    layer = inspect(busybox_root, "busybox")["RootFS"]["Layers"][0]
    assert f"{short(layer)}: Mounted from demo/bb" in out
    digest = manifest_digest(busybox_root, "busybox")
    assert skopeo_inspect(second)["Digest"] == digest

    empty = tmp_path / "empty"
    out = layerbox(empty, "pull", f"{registry.host}/elsewhere/bb@{digest}").stdout
    assert f"{digest}: Pulling from elsewhere/bb" in out
    assert inspect(empty, f"{registry.host}/elsewhere/bb@{digest}")["Id"] \
        == inspect(busybox_root, "busybox")["Id"]
    # A digest pull tags nothing (Docker shows it as <none>).
    assert inspect(empty, f"{registry.host}/elsewhere/bb@{digest}")["RepoTags"] == []
    out = layerbox(empty, "pull", f"{registry.host}/elsewhere/bb:v2@{digest}").stdout
    assert f"{digest}: Pulling from elsewhere/bb" in out
    assert inspect(empty, f"{registry.host}/elsewhere/bb@{digest}")["RepoTags"] == []


def test_chunked_upload(registry, busybox_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERBOX_PUSH_CHUNK_SIZE", "65536")  # busybox's layer is ~1 MB
    name = f"{registry.host}/chunked/bb:1"
    layerbox(busybox_root, "tag", "busybox", name)
    assert ": Pushed" in layerbox(busybox_root, "push", name).stdout
    assert skopeo_inspect(name)["Digest"] == manifest_digest(busybox_root, "busybox")
    layerbox(tmp_path / "empty", "pull", name)
    assert inspect(tmp_path / "empty", name)["Id"] == inspect(busybox_root, "busybox")["Id"]


@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_pull_what_skopeo_pushed(registry, busybox_root, tmp_path, fmt):
    name = f"{registry.host}/other/busybox:{fmt}"
    skopeo("copy", "--dest-tls-verify=false", "--format", fmt,
           f"oci:{busybox_root}/oci:busybox:latest", f"docker://{name}")
    remote = skopeo_inspect(name)
    empty = tmp_path / "empty"
    out = layerbox(empty, "pull", name).stdout
    assert f"Digest: {remote['Digest']}" in out
    assert f"Status: Downloaded newer image for {name}" in out
    pulled = inspect(empty, name)
    assert pulled["Id"] == inspect(busybox_root, "busybox")["Id"]
    assert pulled["RepoDigests"] == [f"{registry.host}/other/busybox@{remote['Digest']}"]
    layerbox(empty, "system", "check")


def test_multi_arch_index_resolves_to_our_platform(registry, busybox_root, tmp_path):
    """An index with a foreign platform first: pull picks linux/<host arch>."""
    host, repo = registry.host, "multi/arch"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{busybox_root}/oci:busybox:latest",
           f"docker://{host}/{repo}:native")
    native = json.loads(get(host, f"/v2/{repo}/manifests/native", OCI_MANIFEST))
    native_digest = skopeo_inspect(f"{host}/{repo}:native")["Digest"]
    config = json.loads(get(host, f"/v2/{repo}/blobs/{native['config']['digest']}"))
    foreign_arch = "arm64" if host_architecture() != "arm64" else "amd64"
    config["architecture"] = foreign_arch
    config_bytes = json.dumps(config).encode()
    foreign = dict(native, config={"mediaType": native["config"]["mediaType"],
                                   "digest": upload_blob(host, repo, config_bytes),
                                   "size": len(config_bytes)})
    data = json.dumps(foreign).encode()
    foreign_digest = put_manifest(host, repo, sha256(data), foreign, OCI_MANIFEST)  # by digest
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": foreign_digest, "size": len(data),
         "platform": {"os": "linux", "architecture": foreign_arch}},
        {"mediaType": OCI_MANIFEST, "digest": native_digest,
         "size": len(get(host, f"/v2/{repo}/manifests/native", OCI_MANIFEST)),
         "platform": {"os": "linux", "architecture": host_architecture()}}]}
    index_digest = put_manifest(host, repo, "1", index, OCI_INDEX)

    empty = tmp_path / "empty"
    out = layerbox(empty, "pull", f"{host}/{repo}:1").stdout
    assert f"Digest: {index_digest}" in out
    pulled = inspect(empty, f"{host}/{repo}:1")
    assert pulled["Architecture"] == host_architecture()
    assert pulled["Id"] == inspect(busybox_root, "busybox")["Id"]
