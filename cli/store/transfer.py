"""What push and pull need from the store beyond :class:`~cli.store.store.Store`'s core.

Built only on the store's public pieces (blobs, the ``repo_digests`` table, leases via
``find_layer``/``put_layer_blob``). Owned by the registry code, kept here because it
speaks the store's schema.
"""

from __future__ import annotations

from typing import BinaryIO

from cli.reference import parse_reference
from cli.store.model import Image, hex_of
from cli.store.store import Store


def open_blob(store: Store, digest: str) -> BinaryIO:
    """A stored blob for streaming out; its digest is checked when the reader hits EOF."""
    return store.blobs.open_verified(digest)


def blob_size(store: Store, digest: str) -> int:
    return store.blobs.path(digest).stat().st_size


def manifest_bytes(store: Store, image: Image) -> bytes:
    """The image's manifest exactly as stored (pushing it keeps the manifest digest)."""
    return store.blobs.read_bytes(image.manifest_digest)


def manifest_media_type(store: Store, image: Image) -> str:
    row = store.conn.execute("SELECT manifest_media_type FROM images WHERE id=?",
                             (image.id,)).fetchone()
    return row[0]


def record_repo_digest(store: Store, repository: str, digest: str, image: Image) -> None:
    """Remember that REPOSITORY (``127.0.0.1:5000/me/x``) holds IMAGE as manifest DIGEST.

    Shown as ``RepoDigests`` by inspect, and tells a later push where a blob can be
    mounted from.
    """
    with store.transaction() as conn:
        conn.execute("INSERT OR REPLACE INTO repo_digests(name, image_id) VALUES (?, ?)",
                     (f"{repository}@{digest}", image.id))


def mount_sources(store: Store, domain: str, blob_digest: str) -> list[str]:
    """Repository paths on registry DOMAIN known to hold BLOB_DIGEST (via pushed/pulled images)."""
    rows = store.conn.execute(
        "SELECT DISTINCT rd.name FROM repo_digests rd JOIN image_layers il "
        "ON il.image_id = rd.image_id WHERE il.digest=? ORDER BY rd.name", (blob_digest,))
    paths = []
    for (name,) in rows:
        ref = parse_reference(name)
        if ref.domain == domain and ref.path not in paths:
            paths.append(ref.path)
    return paths


def short(digest: str) -> str:
    """Docker's 12-hex progress id of a blob."""
    return hex_of(digest)[:12]
