"""The SQLite metadata database (``layerbox.db``): schema and connection settings.

The schema is documented in :mod:`cli.store` (one docstring for the whole layout).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS layers(
    chain_id   TEXT PRIMARY KEY,
    diff_id    TEXT NOT NULL,
    parent     TEXT,
    size       INTEGER NOT NULL,
    tar_size   INTEGER NOT NULL,
    created    TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images(
    id                  TEXT PRIMARY KEY,
    manifest_digest     TEXT NOT NULL,
    manifest_size       INTEGER NOT NULL,
    manifest_media_type TEXT NOT NULL,
    config_size         INTEGER NOT NULL,
    created             TEXT,
    size                INTEGER NOT NULL,
    added               TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS image_layers(
    image_id   TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    chain_id   TEXT NOT NULL REFERENCES layers(chain_id),
    digest     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    PRIMARY KEY(image_id, position));
CREATE INDEX IF NOT EXISTS image_layers_chain ON image_layers(chain_id);
CREATE INDEX IF NOT EXISTS image_layers_digest ON image_layers(digest);
CREATE TABLE IF NOT EXISTS tags(
    name      TEXT PRIMARY KEY,
    image_id  TEXT NOT NULL REFERENCES images(id),
    tagged_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tags_image ON tags(image_id);
CREATE TABLE IF NOT EXISTS repo_digests(
    name     TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id));
CREATE TABLE IF NOT EXISTS containers(
    id       TEXT PRIMARY KEY,
    name     TEXT UNIQUE NOT NULL,
    image_id TEXT NOT NULL,
    created  TEXT NOT NULL,
    record   TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS containers_image ON containers(image_id);
CREATE TABLE IF NOT EXISTS leases(
    kind TEXT NOT NULL,
    key  TEXT NOT NULL,
    pid  INTEGER NOT NULL,
    PRIMARY KEY(kind, key, pid));
"""

BUSY_TIMEOUT_MS = 60_000


def connect(path: os.PathLike | str) -> sqlite3.Connection:
    """Open the database in autocommit mode; transactions are explicit (see :func:`transaction`)."""
    conn = sqlite3.connect(os.fspath(path), timeout=BUSY_TIMEOUT_MS / 1000,
                           isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    _ensure_schema(conn)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _ensure_schema(conn: sqlite3.Connection) -> None:
    """Make a new database WAL with our schema; a current one is left alone.

    Several first commands on a fresh root race here. Switching to WAL needs an exclusive
    lock, and one of four parallel first imports once got "database is locked" here in
    spite of the busy timeout (SQLite does not wait in the busy handler in every locking
    path): so wait and retry (a fresh root is the only case; the version check makes the
    others no-ops).
    """
    import time
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                return
            # WAL lets readers (`layerbox images`) run while another process writes.
            conn.execute("PRAGMA journal_mode=WAL")
            with transaction(conn):
                if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT: takes the write lock up front, so two processes never
    both read, decide and then fail to upgrade (SQLITE_BUSY deadlock)."""
    if conn.in_transaction:  # nested use joins the outer transaction
        yield conn
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
