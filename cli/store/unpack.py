"""Unpacking layers into ``layers/<chain>/diff``: from a blob, on first use, or while
a layer is being written.

From a blob (:func:`unpack_blob`): load, pull, and the first use of a layer that commit
or a build's RUN stored as a blob only (:func:`materialize`, called by
``Store.layer_dirs``). The blob's digest and its content's diff_id are checked on the way.

While it is written (:class:`ConcurrentUnpack`, import and a build's COPY: layers that
are used at once): unpacking afterwards would mean decompressing and hashing the blob
again, so the uncompressed tar goes through a pipe to a thread that applies it as it
comes. The pipe keeps memory bounded: a slow unpacker makes the producer wait.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import shutil
import threading
from pathlib import Path

from cli.store.blobs import CHUNK, file_digest, fsync_dir, temp_name
from cli.store.errors import BlobCorrupt, StoreError
from cli.store.model import hex_of

# Names for annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from cli.store.model import Layer

#: fcntl's F_SETPIPE_SZ (Linux): a 1 MiB pipe carries one sink chunk per write.
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class ConcurrentUnpack:
    """Feed the uncompressed layer tar with :meth:`feed`, then :meth:`finish` (raises if
    the unpack failed) or :meth:`discard`. The result is ``work/diff``, already synced."""

    def __init__(self, tmp_dir: Path) -> None:
        self.work = temp_name(tmp_dir, ".layer")
        self.work.mkdir()
        self.size = 0
        read_fd, self._write_fd = os.pipe()
        with contextlib.suppress(OSError):   # above /proc/sys/fs/pipe-max-size: keep 64 KiB
            fcntl.fcntl(self._write_fd, _F_SETPIPE_SZ, CHUNK)
        self._reader = os.fdopen(read_fd, "rb", buffering=CHUNK)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._unpack, name="unpack-layer", daemon=True)
        self._thread.start()

    def _unpack(self) -> None:
        from overlayfs.layer_tar import unpack_layer
        try:
            unpack_layer(self._reader, self.work / "diff")
        except BaseException as exc:   # re-raised in the producer's thread by finish()
            self._error = exc
        finally:
            self._reader.close()   # a producer still writing gets EPIPE, never blocks

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        view = memoryview(data)
        try:
            while view and self._write_fd >= 0:
                view = view[os.write(self._write_fd, view):]
        except BrokenPipeError:
            self._close_pipe()     # the unpacker stopped early; finish() says why

    def finish(self) -> None:
        self._close_pipe()
        self._thread.join()
        if self._error is not None:
            from overlayfs.layer_tar import LayerError
            if isinstance(self._error, (LayerError, OSError)):
                raise StoreError(f"cannot unpack the new layer: {self._error}") from None
            raise self._error

    def discard(self) -> None:
        self._close_pipe()
        self._thread.join()
        shutil.rmtree(self.work, ignore_errors=True)

    def _close_pipe(self) -> None:
        if self._write_fd >= 0:
            os.close(self._write_fd)
            self._write_fd = -1


class _InflateAhead(io.RawIOBase):
    """A blob's uncompressed content, read, verified, inflated and hashed (its diff_id)
    by a thread a few chunks ahead of the reader: the thread's work is C that lets go
    of the GIL (ISA-L, SHA-256, read), so it overlaps the file creation of the reader.
    It reads the blob to its very end (trailer, digest) before it reports the end.
    Bounded: at most ``_AHEAD`` chunks wait."""

    _AHEAD = 4

    def __init__(self, raw) -> None:
        super().__init__()
        import hashlib
        import queue
        self._raw = raw
        self._queue: queue.Queue = queue.Queue(self._AHEAD)
        self._full = queue.Full
        self._pending = memoryview(b"")
        self._ended = False
        self._stop = threading.Event()
        self._hash = hashlib.sha256()
        self.size = 0
        self._thread = threading.Thread(target=self._inflate, name="inflate-layer", daemon=True)
        self._thread.start()

    def _inflate(self) -> None:
        from overlayfs.layer_tar import open_decompressed
        try:
            stream = open_decompressed(io.BufferedReader(self._raw, CHUNK))
            while not self._stop.is_set():
                data = stream.read(CHUNK)
                if not data:
                    break
                self._hash.update(data)
                self.size += len(data)
                self._put(data)
            self._raw.verify_rest()
            self._put(None)
        except BaseException as exc:   # raised again in the reader's thread
            self._put(exc)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except self._full:
                continue

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            if self._ended:
                return 0
            item = self._queue.get()
            if item is None or isinstance(item, BaseException):
                self._ended = True
                if item is not None:
                    raise item
                return 0
            self._pending = memoryview(item)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def disk_usage(path: Path) -> int:
    """Docker's layer size: st_size of every non-directory entry, hard links counted once."""
    total, seen = 0, set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def unpack_blob(store, work: Path, diff_id: str, digest: str) -> int:
    """Unpack blob DIGEST into WORK/diff, checking its digest and DIFF_ID; the tar size."""
    from overlayfs.layer_tar import READ_ERRORS, LayerError, unpack_layer

    with store.blobs.open_verified(digest) as raw:
        plain = _InflateAhead(raw)
        try:
            unpack_layer(plain, work / "diff")
            plain.drain()
        except (LayerError, OSError, *READ_ERRORS) as exc:
            raise StoreError(f"layer {diff_id}: {exc}") from None
        finally:
            plain.stop()
    if plain.digest != diff_id:
        raise BlobCorrupt(f"layer {digest}: uncompressed content is {plain.digest}, "
                          f"the image config says {diff_id}")
    return plain.size


def install_layer_dir(store, work: Path, chain: str) -> None:
    """Rename WORK (holding an unpacked, synced ``diff/``) to layers/<CHAIN>. Another
    process that got there first (a concurrent load or first use) is fine: its dir is
    the same layer, and WORK is the caller's to remove."""
    try:
        os.rename(work, store.layers_dir / hex_of(chain))
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
    else:
        fsync_dir(store.layers_dir)


def materialize(store, layer: Layer) -> None:
    """Make layers/<chain>/diff from LAYER's blob, if it is not there yet.

    Under an exclusive flock of ``layers/``, so two first uses unpack once (the second
    waits, then finds the dir); the unpack goes to ``tmp/`` and is renamed into place
    whole, so a reader never sees half a layer and a killed unpacker leaves only a tmp
    entry (removed by the next ``Store.open``). A lease keeps a concurrent rmi from
    collecting the layer meanwhile (it is collected when this process lets go). The
    blob's digest and the diff_id of its content are verified on the way: a damaged blob
    is a one-line StoreError and nothing is left behind.
    """
    lock = os.open(store.layers_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if store.layer_path(layer.chain_id).is_dir():
            return
        with store.transaction() as conn:
            row = conn.execute("SELECT diff_id FROM layers WHERE chain_id=?",
                               (layer.chain_id,)).fetchone()
            if row is None:
                raise StoreError(f"layer {layer.chain_id} is not in the store")
            for kind, key in (("blob", layer.digest), ("layer", layer.chain_id)):
                conn.execute("INSERT OR IGNORE INTO leases(kind, key, pid) VALUES (?, ?, ?)",
                             (kind, key, os.getpid()))
        work = temp_name(store.tmp_dir, ".layer")
        work.mkdir()
        try:
            try:
                unpack_blob(store, work, row["diff_id"], layer.digest)
            except StoreError as exc:
                # Damage in the middle of a blob shows as bad deflate data before the
                # digest is known: say which it is.
                if not isinstance(exc, BlobCorrupt) and store.blobs.exists(layer.digest):
                    actual = file_digest(store.blobs.path(layer.digest))
                    if actual != layer.digest:
                        raise BlobCorrupt(f"blob {layer.digest} of layer {layer.chain_id} is "
                                          f"damaged (its content hashes to {actual})") from None
                raise
            install_layer_dir(store, work, layer.chain_id)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    finally:
        os.close(lock)   # releases the flock
