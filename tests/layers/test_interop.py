"""Go tools read our layers the same way: umoci (containers' Go tar and whiteout code)
applies a base layer plus a layer exported from a container's upper dir, and must
get the tree the kernel overlay showed inside the container."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess

import pytest

from overlayfs.layer_tar import export_layer
from tests.layers.test_kernel_oracle import CONTAINER_SCRIPT, LOWER_SCRIPT, Overlay, _sh
from tests.layers.treeutil import describe

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("umoci"),
                                reason="needs root and umoci")


def _oci_layout(root, layers: list[bytes]) -> None:
    """A minimal OCI image layout holding LAYERS (uncompressed tars, bottom first)."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers",
                   "diff_ids": [f"sha256:{hashlib.sha256(t).hexdigest()}" for t in layers]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    **put(gzip.compress(t, mtime=0))} for t in layers],
    }).encode()
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **put(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "test"}}]}))


def _content_only(tree):
    """Type, mode, owner, payload and xattrs; Go tools reset directory times on delete."""
    return {path: (e[0], e[1], e[2], e[3], e[5], e[7]) for path, e in tree.items()}


@pytest.mark.parametrize("redirect_dir", ["off", "on"])
def test_umoci_applies_our_layers_like_the_kernel_overlay(tmp_path, redirect_dir):
    lower = tmp_path / "lower"
    lower.mkdir()
    _sh(lower, LOWER_SCRIPT)
    upper = tmp_path / "upper"
    upper.mkdir()
    container = Overlay(tmp_path, "container")
    container.mount([lower], upper, redirect_dir=redirect_dir, index="off")
    try:
        _sh(container.merged, CONTAINER_SCRIPT)
        expected = describe(container.merged)
    finally:
        container.umount()

    tars = []
    for source, lowers in ((lower, []), (upper, [lower])):
        out = io.BytesIO()
        export_layer(source, out, lowers=lowers)
        tars.append(out.getvalue())
    layout = tmp_path / "oci"
    _oci_layout(layout, tars)
    rootfs = tmp_path / "rootfs"
    subprocess.run(["umoci", "raw", "unpack", "--image", f"{layout}:test", str(rootfs)],
                   check=True, capture_output=True)
    assert _content_only(describe(rootfs)) == _content_only(expected)
