"""Read-only views for listing commands, answered from the database alone (fast)."""

from __future__ import annotations

from dataclasses import dataclass

from cli.reference import parse_reference
from cli.store.store import Store


@dataclass(frozen=True)
class ImageSummary:
    id: str
    created: str | None
    size: int
    manifest_digest: str
    tags: tuple[str, ...]          # full names, "docker.io/library/busybox:latest"
    repo_digests: tuple[str, ...]  # "docker.io/library/busybox@sha256:…"
    containers: int


def image_summaries(store: Store) -> list[ImageSummary]:
    """Every image, newest first (by config ``created``, then by when it was stored)."""
    with store.reading() as conn:
        tags: dict[str, list[str]] = {}
        for row in conn.execute("SELECT name, image_id FROM tags ORDER BY name"):
            tags.setdefault(row["image_id"], []).append(row["name"])
        digests: dict[str, list[str]] = {}
        for row in conn.execute("SELECT name, image_id FROM repo_digests ORDER BY name"):
            digests.setdefault(row["image_id"], []).append(row["name"])
        users = dict(conn.execute("SELECT image_id, COUNT(*) FROM containers GROUP BY image_id")
                     .fetchall())
        rows = conn.execute("SELECT id, created, size, manifest_digest, added FROM images "
                            "ORDER BY COALESCE(created, added) DESC, added DESC").fetchall()
    return [ImageSummary(r["id"], r["created"], r["size"], r["manifest_digest"],
                         tuple(tags.get(r["id"], ())), tuple(digests.get(r["id"], ())),
                         users.get(r["id"], 0)) for r in rows]


def split_name(full: str) -> tuple[str, str]:
    """``docker.io/library/busybox:latest`` → (``busybox``, ``latest``)."""
    ref = parse_reference(full)
    return ref.familiar_name, ref.tag or ref.digest or "<none>"
