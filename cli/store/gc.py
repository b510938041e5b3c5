"""Removing images and collecting the layers and blobs nobody uses any more.

Collection only looks at candidates (what a removal or a dead writer released), never
scans for "unreferenced" files: a file another process is writing right now is
protected by its lease, and small blobs are only written under the write lock.
Layer dirs are renamed into ``tmp/`` inside the transaction and deleted after it,
so the lock is held for a rename, not for an ``rm -r``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from cli.store.blobs import temp_name


def lease_held(conn: sqlite3.Connection, kind: str, key: str) -> bool:
    from cli.store.store import _pid_alive
    for (pid,) in conn.execute("SELECT pid FROM leases WHERE kind=? AND key=?", (kind, key)):
        if pid == os.getpid() or _pid_alive(pid):
            return True
    return False


def collect(store, chains: set[str], digests: set[str], trash: list[Path]) -> list[str]:
    """Inside a transaction: drop CHAINS and DIGESTS that no image or live lease uses.

    Returns the chain ids removed; their dirs are appended to TRASH for :func:`empty_trash`.
    """
    conn = store.conn
    removed = []
    for chain in sorted(chains):
        if conn.execute("SELECT 1 FROM image_layers WHERE chain_id=? LIMIT 1", (chain,)).fetchone():
            continue
        if lease_held(conn, "layer", chain):
            continue
        # A parent chain only loses a user here if it is a candidate itself (layer dirs are
        # independent of their parents on disk; image_layers lists every chain of an image).
        conn.execute("DELETE FROM layers WHERE chain_id=?", (chain,))
        path = store.layers_dir / chain.partition(":")[2]
        if path.exists():
            target = temp_name(store.tmp_dir, ".trash")
            os.rename(path, target)
            trash.append(target)
        removed.append(chain)
    for digest in sorted(digests):
        if conn.execute(
                "SELECT 1 FROM images WHERE id=? OR manifest_digest=? UNION ALL "
                "SELECT 1 FROM image_layers WHERE digest=? LIMIT 1",
                (digest, digest, digest)).fetchone():
            continue
        if lease_held(conn, "blob", digest):
            continue
        store.blobs.delete(digest)
    return removed


def empty_trash(trash: list[Path]) -> None:
    for path in trash:
        shutil.rmtree(path, ignore_errors=True)


class Removal:
    """What one removal did, in Docker's report order."""

    def __init__(self) -> None:
        self.untagged: list[str] = []
        self.deleted: list[str] = []
        self.reclaimed = 0


def delete_image_rows(store, image_id: str, trash: list[Path], report: Removal) -> None:
    """Inside a transaction: remove an image (and its tags) and collect its layers and blobs."""
    conn = store.conn
    row = conn.execute("SELECT manifest_digest FROM images WHERE id=?", (image_id,)).fetchone()
    if row is None:
        return
    layer_rows = conn.execute("SELECT chain_id, digest FROM image_layers WHERE image_id=? "
                              "ORDER BY position DESC", (image_id,)).fetchall()
    sizes = {r["chain_id"]: r["size"] for r in conn.execute(
        "SELECT l.chain_id, l.size FROM layers l JOIN image_layers il ON il.chain_id = l.chain_id "
        "WHERE il.image_id=?", (image_id,))}
    conn.execute("DELETE FROM tags WHERE image_id=?", (image_id,))
    conn.execute("DELETE FROM repo_digests WHERE image_id=?", (image_id,))
    conn.execute("DELETE FROM image_layers WHERE image_id=?", (image_id,))
    conn.execute("DELETE FROM images WHERE id=?", (image_id,))
    chains = [r["chain_id"] for r in layer_rows]
    digests = {row["manifest_digest"], image_id} | {r["digest"] for r in layer_rows}
    removed = set(collect(store, set(chains), digests, trash))
    report.deleted.append(image_id)
    for chain in chains:  # top first, as Docker prints them
        if chain in removed:
            report.deleted.append(chain)
            report.reclaimed += sizes.get(chain, 0)
