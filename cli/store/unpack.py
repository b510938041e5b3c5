"""Unpacking a new layer while it is being written (commit, build).

A layer made here (``Store.produce_layer``) is needed twice: as a compressed blob and
unpacked in ``layers/<chain>/diff``. Unpacking it afterwards meant decompressing and
hashing the blob again and creating every file only once the blob was done; instead the
uncompressed tar goes through a pipe to a thread that applies it as it comes, so file
creation overlaps the export and compression and no byte is decompressed or re-hashed.
The pipe keeps memory bounded: a slow unpacker makes the producer wait.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import threading
from pathlib import Path

from cli.store.blobs import CHUNK, temp_name
from cli.store.errors import StoreError

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
