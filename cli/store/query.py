"""Read-only views for listing commands, answered from the database alone.

Deliberately light: only sqlite3 is imported (no pathlib, dataclasses or the Store),
so ``layerbox images`` starts and answers in a few milliseconds.
"""

from __future__ import annotations

import os

from cli.store import db


class ImageSummary:
    __slots__ = ("id", "created", "size", "manifest_digest", "tags", "repo_digests", "containers")

    def __init__(self, id, created, size, manifest_digest, tags, repo_digests, containers):
        self.id = id
        self.created = created
        self.size = size
        self.manifest_digest = manifest_digest
        self.tags = tags                  # full names, "docker.io/library/busybox:latest"
        self.repo_digests = repo_digests  # "docker.io/library/busybox@sha256:…"
        self.containers = containers


def image_summaries(root: str) -> list[ImageSummary]:
    """Every image, newest first (by config ``created``, then by when it was stored)."""
    path = os.path.join(root, "layerbox.db")
    if not os.path.exists(path):
        return []
    conn = db.connect(path)
    try:
        conn.execute("BEGIN")
        tags: dict[str, list[str]] = {}
        for name, image_id in conn.execute("SELECT name, image_id FROM tags ORDER BY name"):
            tags.setdefault(image_id, []).append(name)
        digests: dict[str, list[str]] = {}
        for name, image_id in conn.execute("SELECT name, image_id FROM repo_digests "
                                           "ORDER BY name"):
            digests.setdefault(image_id, []).append(name)
        users = dict(conn.execute("SELECT image_id, COUNT(*) FROM containers GROUP BY image_id")
                     .fetchall())
        rows = conn.execute("SELECT id, created, size, manifest_digest FROM images "
                            "ORDER BY COALESCE(created, added) DESC, added DESC").fetchall()
        conn.execute("COMMIT")
    finally:
        conn.close()
    return [ImageSummary(r[0], r[1], r[2], r[3], tuple(tags.get(r[0], ())),
                         tuple(digests.get(r[0], ())), users.get(r[0], 0)) for r in rows]


def split_name(full: str) -> tuple[str, str]:
    """A stored (normalized) name → Docker's display (repository, tag):
    ``docker.io/library/busybox:latest`` → (``busybox``, ``latest``)."""
    name, sep, tag = full.rpartition(":")
    if not sep or "/" in tag:
        name, tag = full, "<none>"
    if name.startswith("docker.io/"):
        name = name[len("docker.io/"):]
        if name.startswith("library/") and name.count("/") == 1:
            name = name[len("library/"):]
    return name, tag
