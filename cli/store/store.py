"""The :class:`Store`: opening, writing layers and images, tagging, resolving names.

Removal and garbage collection live in :mod:`cli.store.gc`; the layout is described in
:mod:`cli.store`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

# Names for annotations only: importing typing is 2-4 ms of every command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

from cli import logs
from cli.reference import is_hex64, parse_tagged, try_parse
from cli.store import db, gc
from cli.store.blobs import CHUNK, BlobStore, HashingWriter, sha256_digest, temp_name
from cli.store.errors import BlobCorrupt, NoSuchImage, StoreError
from cli.store.layout import ensure_layout, publish_index
from cli.store.model import (COMPRESSION_MEDIA_TYPES, OCI_CONFIG, OCI_MANIFEST, Image, Layer,
                             chain_id, hex_of)

log = logs.get(__name__)


def now_rfc3339() -> str:
    from datetime import datetime, timezone   # only the writers need it
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _syncfs(path: Path) -> None:
    """Flush the filesystem holding PATH (one syscall instead of fsyncing every file)."""
    import ctypes
    fd = os.open(path, os.O_RDONLY)
    try:
        ctypes.CDLL(None, use_errno=True).syncfs(fd)
    finally:
        os.close(fd)


def _manifest_matches(manifest_bytes: bytes, config_bytes: bytes, layers: list[Layer]) -> bool:
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        return False
    config_digest = sha256_digest(config_bytes)
    return (isinstance(manifest, dict) and manifest.get("mediaType", OCI_MANIFEST) == OCI_MANIFEST
            and manifest.get("schemaVersion") == 2
            and (manifest.get("config") or {}).get("digest") == config_digest
            and (manifest.get("config") or {}).get("mediaType") == OCI_CONFIG
            and [(d.get("digest"), d.get("mediaType")) for d in manifest.get("layers") or []]
            == [(layer.digest, layer.media_type) for layer in layers])


class Store:
    """An image store rooted at ``root``; one per process, closed with :meth:`close`."""

    def __init__(self, root: Path, conn: sqlite3.Connection):
        self.root = root
        self.conn = conn
        self.oci_dir = root / "oci"
        self.layers_dir = root / "layers"
        self.tmp_dir = root / "tmp"
        self.blobs = BlobStore(self.oci_dir / "blobs" / "sha256", self.tmp_dir)

    # -- opening and closing -------------------------------------------------------

    @classmethod
    def open(cls, root) -> "Store":
        root = Path(os.path.abspath(os.fspath(root)))
        for sub in ("tmp", "layers", "containers"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        ensure_layout(root / "oci", root / "tmp")
        try:
            conn = db.connect(root / "layerbox.db")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {root / 'layerbox.db'}: {exc}") from None
        store = cls(root, conn)
        store.clean_leftovers()
        return store

    def close(self) -> None:
        """Release this process's leases (collecting what nobody uses) and close the db."""
        if self.conn is None:
            return
        try:
            self._release_leases()
        finally:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def connection_closed(self) -> Iterator[None]:
        """The database connection closed for the duration, then reopened: a process
        forked meanwhile (the container monitor) must not inherit an open SQLite
        connection. This process's leases are rows keyed by its pid: they stay."""
        self.conn.close()
        try:
            yield
        finally:
            self.conn = db.connect(self.root / "layerbox.db")

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return db.transaction(self.conn)

    def clean_leftovers(self) -> None:
        """Remove temp files of dead processes and whatever their unfinished writes leased."""
        for entry in os.scandir(self.tmp_dir):
            pid = entry.name.split("-", 1)[0]
            if pid.isdigit() and (int(pid) == os.getpid() or _pid_alive(int(pid))):
                continue
            log.debug("removing leftover %s", entry.path)
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        pids = [r[0] for r in self.conn.execute("SELECT DISTINCT pid FROM leases")]
        dead = [p for p in pids if p != os.getpid() and not _pid_alive(p)]
        if dead:
            trash: list[Path] = []
            with self.transaction() as conn:
                marks = ",".join("?" * len(dead))
                rows = conn.execute(f"SELECT kind, key FROM leases WHERE pid IN ({marks})",
                                    dead).fetchall()
                conn.execute(f"DELETE FROM leases WHERE pid IN ({marks})", dead)
                gc.collect(self, {r["key"] for r in rows if r["kind"] == "layer"},
                           {r["key"] for r in rows if r["kind"] == "blob"}, trash)
            gc.empty_trash(trash)

    def _lease(self, kind: str, key: str) -> None:
        """Protect a layer or blob we are writing from a concurrent rmi's collection."""
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO leases(kind, key, pid) VALUES (?, ?, ?)",
                         (kind, key, os.getpid()))

    def _release_leases(self) -> None:
        if not self.conn.execute("SELECT 1 FROM leases WHERE pid=? LIMIT 1",
                                 (os.getpid(),)).fetchone():
            return
        trash: list[Path] = []
        with self.transaction() as conn:
            rows = conn.execute("SELECT kind, key FROM leases WHERE pid=?",
                                (os.getpid(),)).fetchall()
            conn.execute("DELETE FROM leases WHERE pid=?", (os.getpid(),))
            gc.collect(self, {r["key"] for r in rows if r["kind"] == "layer"},
                       {r["key"] for r in rows if r["kind"] == "blob"}, trash)
        gc.empty_trash(trash)

    def publish_index(self) -> None:
        """Rewrite oci/index.json; call inside a transaction that changed tags or images."""
        publish_index(self.conn, self.oci_dir, self.tmp_dir)

    # -- layers ---------------------------------------------------------------------

    def layer_path(self, chain: str) -> Path:
        return self.layers_dir / hex_of(chain) / "diff"

    def write_layer(self, tar_stream: BinaryIO, *, compression: str = "gzip",
                    parent: Layer | None = None) -> Layer:
        """Store an UNCOMPRESSED layer tar read from TAR_STREAM, streaming (see
        :meth:`produce_layer`)."""
        def copy(sink) -> None:
            while chunk := tar_stream.read(CHUNK):
                sink.write(chunk)
        return self.produce_layer(copy, compression=compression, parent=parent)

    def produce_layer(self, produce: Callable[[_PlainSink], None], *,
                      compression: str = "gzip", parent: Layer | None = None,
                      lazy: bool = False) -> Layer:
        """Store the uncompressed layer tar that PRODUCE writes to the sink it is given.

        The tar is hashed (its diff_id) and compressed as it is written, never held
        whole in memory; the blob is not read back. Without LAZY it is also unpacked
        into a temp dir (later ``layers/<chainid>/diff``) as it comes. With LAZY (commit,
        a build's RUN: tars our own exporter wrote) only its headers are read
        (:mod:`cli.store.scan`: that it unpacks, and its size) and the dir is made from
        the blob on first use (:meth:`layer_dirs`); a tar the scan cannot vouch for is
        unpacked from the blob at once. PARENT (the layer below, if any) makes the
        chain id right at once; without it :meth:`create_image` re-homes the layer.
        """
        from cli.store.compress import compressor

        if compression not in COMPRESSION_MEDIA_TYPES:
            raise StoreError(f"unknown compression: {compression} (use gzip, zstd or none)")
        tmp = temp_name(self.tmp_dir, ".blob")
        if lazy:
            from cli.store.scan import LayerScan
            unpacked, scan = None, LayerScan()
            tee = scan.feed
        else:
            from cli.store.unpack import ConcurrentUnpack
            unpacked, scan = ConcurrentUnpack(self.tmp_dir), None
            tee = unpacked.feed
        try:
            with open(tmp, "wb") as f:
                out = HashingWriter(f)
                packer = compressor(compression, out.write)
                try:
                    sink = _PlainSink(packer, tee)
                    produce(sink)
                    sink.flush()
                    packer.close()
                except BaseException:
                    packer.abort()
                    raise
                f.flush()
                os.fsync(f.fileno())
            if unpacked is not None:
                unpacked.finish()
        except BaseException:
            tmp.unlink(missing_ok=True)
            if unpacked is not None:
                unpacked.discard()
            raise
        deferred = None
        if scan is not None:
            scan.finish()
            if scan.plain:
                deferred = (scan.size, sink.size)
            else:
                log.debug("layer %s: not a plain tar, unpacked now", sink.diff_id)
        return self._add_layer_blob(tmp, out.digest, out.size, COMPRESSION_MEDIA_TYPES[compression],
                                    sink.diff_id, parent, unpacked=unpacked, deferred=deferred)

    def put_layer_blob(self, stream: BinaryIO, *, media_type: str, diff_id: str,
                       parent: Layer | None = None, digest: str | None = None) -> Layer:
        """Store an already compressed (or plain) layer blob verbatim, e.g. from an OCI archive.

        DIFF_ID (from the image config) is verified while unpacking; DIGEST, if given,
        is verified after copying.
        """
        tmp = temp_name(self.tmp_dir, ".blob")
        try:
            with open(tmp, "wb") as f:
                out = HashingWriter(f)
                while chunk := stream.read(CHUNK):
                    out.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            if digest is not None and out.digest != digest:
                raise BlobCorrupt(f"layer blob {digest}: digest mismatch (got {out.digest})")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return self._add_layer_blob(tmp, out.digest, out.size, media_type, diff_id, parent)

    def _add_layer_blob(self, tmp: Path, digest: str, size: int, media_type: str,
                        diff_id: str, parent: Layer | None, unpacked=None,
                        deferred: tuple[int, int] | None = None) -> Layer:
        """Commit the blob at TMP and the layer's row; its dir is UNPACKED (moved into
        place), or unpacked from the blob now, or with DEFERRED = (size, tar size) left
        for the first use."""
        chain = chain_id(parent.chain_id if parent else None, diff_id)
        try:
            # Leases first: from here on a concurrent rmi will not collect these.
            with self.transaction() as conn:
                for kind, key in (("blob", digest), ("layer", chain)):
                    conn.execute("INSERT OR IGNORE INTO leases(kind, key, pid) VALUES (?, ?, ?)",
                                 (kind, key, os.getpid()))
            self.blobs.commit_temp(tmp, digest)
        except BaseException:
            if unpacked is not None:
                unpacked.discard()
            raise
        finally:
            tmp.unlink(missing_ok=True)
        parent_chain = parent.chain_id if parent else None
        if deferred is not None:
            self._insert_layer_row(chain, diff_id, parent_chain, *deferred)
        else:
            self._ensure_unpacked(chain, diff_id, parent_chain, digest, unpacked=unpacked)
        return Layer(digest=digest, size=size, diff_id=diff_id, media_type=media_type,
                     chain_id=chain)

    def _insert_layer_row(self, chain: str, diff_id: str, parent_chain: str | None,
                          size: int, tar_size: int) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO layers(chain_id, diff_id, parent, size, "
                         "tar_size, created) VALUES (?, ?, ?, ?, ?, ?)",
                         (chain, diff_id, parent_chain, size, tar_size, now_rfc3339()))

    def _ensure_unpacked(self, chain: str, diff_id: str, parent_chain: str | None,
                         digest: str, unpacked=None) -> None:
        """Unpack blob DIGEST into layers/<chain>/diff unless the layer is known already
        (unpacked, or left for its first use: :meth:`layer_dirs`).

        UNPACKED (a finished ``ConcurrentUnpack`` of this very layer) is moved into
        place instead of unpacking the blob again.
        """
        from cli.store.unpack import disk_usage, install_layer_dir, unpack_blob
        row = self.conn.execute("SELECT 1 FROM layers WHERE chain_id=?", (chain,)).fetchone()
        if row:
            if unpacked is not None:
                unpacked.discard()
            return
        if unpacked is not None:
            work, tar_size = unpacked.work, unpacked.size
        else:
            work = temp_name(self.tmp_dir, ".layer")
            work.mkdir()
        try:
            if unpacked is None:
                tar_size = unpack_blob(self, work, diff_id, digest)
            size = disk_usage(work / "diff")
            # unpack_layer synced the content and fsynced work/ after naming diff/.
            install_layer_dir(self, work, chain)
            self._insert_layer_row(chain, diff_id, parent_chain, size, tar_size)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)

    def find_layer(self, chain: str) -> Layer | None:
        """A stored layer with this chain id (and a blob), leased for the caller; else None.

        Lets load and pull skip layers the store already has.
        """
        row = self.conn.execute(
            "SELECT il.digest, il.size, il.media_type, l.diff_id FROM image_layers il "
            "JOIN layers l ON l.chain_id = il.chain_id WHERE il.chain_id=? LIMIT 1",
            (chain,)).fetchone()
        if row is None:
            return None
        self._lease("layer", chain)
        self._lease("blob", row["digest"])
        if not self.blobs.exists(row["digest"]):   # its dir may not be made yet: fine
            return None
        return Layer(row["digest"], row["size"], row["diff_id"], row["media_type"], chain)

    def layer_dirs(self, image: Image) -> list[Path]:
        """The unpacked layer dirs of IMAGE, TOP FIRST (as overlay's lowerdir wants them),
        each made from its blob first if it is not there yet (:func:`unpack.materialize`).

        The one place that hands out layer dirs to be read: mounts (run, create, start,
        cp, export), diff, commit and build all come here."""
        for layer in image.layers:
            if not self.layer_path(layer.chain_id).is_dir():
                from cli.store.unpack import materialize
                materialize(self, layer)
        return self.layer_paths(image)

    def layer_paths(self, image: Image) -> list[Path]:
        """Where IMAGE's layer dirs are or will be, TOP FIRST, without making them (inspect)."""
        return [self.layer_path(layer.chain_id) for layer in reversed(image.layers)]

    # -- images ---------------------------------------------------------------------

    def create_image(self, *, config: dict, layers: list[Layer]) -> Image:
        """Write config and manifest blobs for LAYERS (bottom first); untagged until tag()."""
        config_bytes = json.dumps(config, separators=(",", ":")).encode()
        return self.create_image_from_bytes(config_bytes, layers)

    def create_image_from_bytes(self, config_bytes: bytes, layers: list[Layer],
                                manifest_bytes: bytes | None = None) -> Image:
        """As :meth:`create_image`, keeping the config bytes verbatim (so ids survive load).

        MANIFEST_BYTES, an OCI manifest naming exactly this config and these layer blobs,
        is kept verbatim too (so the manifest digest survives a copy out and back).
        """
        config = json.loads(config_bytes)
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if diff_ids != [layer.diff_id for layer in layers]:
            raise StoreError("image config rootfs.diff_ids do not match the layers")
        layers = self._rehome(layers)
        if manifest_bytes is not None and not _manifest_matches(manifest_bytes, config_bytes,
                                                                layers):
            manifest_bytes = None
        if manifest_bytes is None:
            manifest_bytes = self._manifest_bytes(config_bytes, layers)
        with self.transaction() as conn:
            # Small blobs are written under the write lock, so no collection races them.
            image_id, config_size = self.blobs.put_bytes(config_bytes)
            manifest_digest, manifest_size = self.blobs.put_bytes(manifest_bytes)
            total = 0
            for layer in layers:
                row = conn.execute("SELECT size FROM layers WHERE chain_id=?",
                                   (layer.chain_id,)).fetchone()
                if row is None or not self.blobs.exists(layer.digest):
                    raise StoreError(f"layer {layer.chain_id} is not in the store")
                total += row["size"]
            exists = conn.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone()
            if not exists:
                conn.execute(
                    "INSERT INTO images(id, manifest_digest, manifest_size, manifest_media_type,"
                    " config_size, created, size, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (image_id, manifest_digest, manifest_size, OCI_MANIFEST, config_size,
                     config.get("created"), total, now_rfc3339()))
                conn.executemany(
                    "INSERT INTO image_layers(image_id, position, chain_id, digest, size, "
                    "media_type) VALUES (?, ?, ?, ?, ?, ?)",
                    [(image_id, i, layer.chain_id, layer.digest, layer.size, layer.media_type)
                     for i, layer in enumerate(layers)])
                self.publish_index()
        return self.get_image(image_id)

    @staticmethod
    def _manifest_bytes(config_bytes: bytes, layers: list[Layer]) -> bytes:
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config_bytes),
                       "size": len(config_bytes)},
            "layers": [{"mediaType": layer.media_type, "digest": layer.digest,
                        "size": layer.size} for layer in layers]}
        return json.dumps(manifest, separators=(",", ":")).encode()

    def _rehome(self, layers: list[Layer]) -> list[Layer]:
        """Give each layer its true chain id (callers of write_layer may omit ``parent``)."""
        fixed, parent = [], None
        for layer in layers:
            chain = chain_id(parent, layer.diff_id)
            if chain != layer.chain_id:
                self._lease("layer", chain)
                row = self.conn.execute("SELECT size, tar_size FROM layers WHERE chain_id=?",
                                        (layer.chain_id,)).fetchone()
                if row is not None:   # same diff_id, same content: its dir comes on first use
                    self._insert_layer_row(chain, layer.diff_id, parent, row["size"],
                                           row["tar_size"])
                else:
                    self._ensure_unpacked(chain, layer.diff_id, parent, layer.digest)
                layer = Layer(layer.digest, layer.size, layer.diff_id, layer.media_type, chain)
            fixed.append(layer)
            parent = chain
        return fixed

    def tag(self, image: Image, ref: str) -> None:
        """Point REF (``name[:tag]``, default ``latest``) at IMAGE, moving it if it existed."""
        name = str(parse_tagged(ref))
        with self.transaction() as conn:
            if not conn.execute("SELECT 1 FROM images WHERE id=?", (image.id,)).fetchone():
                raise NoSuchImage(image.id)
            conn.execute("INSERT OR REPLACE INTO tags(name, image_id, tagged_at) VALUES (?, ?, ?)",
                         (name, image.id, now_rfc3339()))
            self.publish_index()

    def image_config(self, image: Image | str) -> dict:
        image_id = image if isinstance(image, str) else image.id
        return json.loads(self.blobs.read_bytes(image_id))

    def get_image(self, image_id: str) -> Image:
        row = self.conn.execute("SELECT manifest_digest FROM images WHERE id=?",
                                (image_id,)).fetchone()
        if row is None:
            raise NoSuchImage(image_id)
        layers = tuple(
            Layer(digest=r["digest"], size=r["size"], diff_id=r["diff_id"],
                  media_type=r["media_type"], chain_id=r["chain_id"])
            for r in self.conn.execute(
                "SELECT il.digest, il.size, il.media_type, il.chain_id, l.diff_id "
                "FROM image_layers il JOIN layers l ON l.chain_id = il.chain_id "
                "WHERE il.image_id=? ORDER BY il.position", (image_id,)))
        return Image(id=image_id, manifest_digest=row["manifest_digest"],
                     config=self.image_config(image_id), layers=layers,
                     repo_tags=tuple(self.repo_tags(image_id)))

    def repo_tags(self, image_id: str) -> list[str]:
        from cli.store.layout import ref_name
        return [ref_name(r[0]) for r in self.conn.execute(
            "SELECT name FROM tags WHERE image_id=? ORDER BY name", (image_id,))]

    def resolve_image_id(self, name: str) -> str:
        """Docker's lookup order: full id, NAME[:TAG], NAME@DIGEST, then a unique id prefix."""
        text = name[7:] if name.startswith("sha256:") else None
        if text is not None or is_hex64(name):
            full = "sha256:" + (text if text is not None else name)
            if self.conn.execute("SELECT 1 FROM images WHERE id=?", (full,)).fetchone():
                return full
            if text is not None and len(text) < 64:
                return self._by_prefix(text, name)
            raise NoSuchImage(name)
        ref = try_parse(name)
        if ref is not None:
            if ref.digest:
                row = self.conn.execute(
                    "SELECT id FROM images WHERE manifest_digest=? UNION "
                    "SELECT image_id FROM repo_digests WHERE name=?",
                    (ref.digest, f"{ref.name}@{ref.digest}")).fetchone()
                if row:
                    return row[0]
                raise NoSuchImage(name)
            row = self.conn.execute("SELECT image_id FROM tags WHERE name=?",
                                    (str(ref.with_default_tag()),)).fetchone()
            if row:
                return row[0]
        if all(c in "0123456789abcdef" for c in name) and name:
            return self._by_prefix(name, name)
        raise NoSuchImage(name)

    def _by_prefix(self, prefix: str, name: str) -> str:
        rows = self.conn.execute("SELECT id FROM images WHERE id >= ? AND id < ? LIMIT 2",
                                 (f"sha256:{prefix}", f"sha256:{prefix}\uffff")).fetchall()
        if len(rows) == 1:
            return rows[0][0]
        if len(rows) > 1:
            raise StoreError(f"ambiguous image id prefix: {name}")
        raise NoSuchImage(name)

    def resolve_image(self, name: str) -> Image:
        return self.get_image(self.resolve_image_id(name))

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for multi-query reads (``images``, ``system check``)."""
        self.conn.execute("BEGIN")
        try:
            yield self.conn
        finally:
            self.conn.execute("COMMIT")


class _PlainSink:
    """Where a layer producer writes the uncompressed tar: hashes it (the diff_id) and
    hands the compressor CHUNK-sized pieces, so many small tar writes cost one call."""

    def __init__(self, packer, tee: Callable[[bytes], None]) -> None:
        self._packer = packer
        self._tee = tee
        import hashlib
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self.size = 0

    def write(self, data) -> int:
        self._buffer += data
        if len(self._buffer) >= CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            piece = bytes(self._buffer)
            self._buffer.clear()
            self._hash.update(piece)
            self.size += len(piece)
            self._packer.write(piece)
            self._tee(piece)

    @property
    def diff_id(self) -> str:
        return "sha256:" + self._hash.hexdigest()
