"""The OCI image layout files outside ``blobs/``: ``oci-layout`` and ``index.json``.

``index.json`` is derived from the database: it is rewritten (temp + rename) inside
every transaction that changes tags or images, while that transaction holds the
database write lock, so writers never interleave and readers (skopeo, umoci) see
either the old or the new index.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from cli.reference import parse_reference
from cli.store.blobs import fsync_dir, temp_name
from cli.store.model import (CONTAINERD_NAME_ANNOTATION, OCI_INDEX, OCI_LAYOUT_VERSION,
                             REF_NAME_ANNOTATION)


def write_atomically(path: Path, data: bytes, tmp_dir: Path) -> None:
    tmp = temp_name(tmp_dir, ".json")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def ensure_layout(oci_dir: Path, tmp_dir: Path) -> None:
    (oci_dir / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    layout = oci_dir / "oci-layout"
    if not layout.exists():
        write_atomically(layout, json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}).encode(),
                         tmp_dir)
    if not (oci_dir / "index.json").exists():
        write_atomically(oci_dir / "index.json", _index_bytes([]), tmp_dir)


def ref_name(full_name: str) -> str:
    """The index.json ref.name of a stored tag: Docker's familiar form (``busybox:latest``)."""
    return parse_reference(full_name).familiar


def _index_bytes(manifests: list[dict]) -> bytes:
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    return json.dumps(index, indent=2).encode() + b"\n"


def publish_index(conn: sqlite3.Connection, oci_dir: Path, tmp_dir: Path) -> None:
    """Rewrite index.json from the tags and images tables. Call inside a transaction."""
    manifests = []
    rows = conn.execute(
        "SELECT t.name, i.manifest_digest, i.manifest_size, i.manifest_media_type "
        "FROM tags t JOIN images i ON i.id = t.image_id ORDER BY t.name")
    for row in rows:
        manifests.append({
            "mediaType": row["manifest_media_type"], "digest": row["manifest_digest"],
            "size": row["manifest_size"],
            "annotations": {CONTAINERD_NAME_ANNOTATION: row["name"],
                            REF_NAME_ANNOTATION: ref_name(row["name"])}})
    # Untagged images stay listed (without a name) so the layout stays self-contained
    # and tools that garbage-collect a layout (umoci gc) keep their blobs.
    rows = conn.execute(
        "SELECT manifest_digest, manifest_size, manifest_media_type FROM images "
        "WHERE id NOT IN (SELECT image_id FROM tags) ORDER BY added, id")
    for row in rows:
        manifests.append({"mediaType": row["manifest_media_type"],
                          "digest": row["manifest_digest"], "size": row["manifest_size"]})
    write_atomically(oci_dir / "index.json", _index_bytes(manifests), tmp_dir)
