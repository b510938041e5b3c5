"""``layerbox import``: a root filesystem tarball becomes a one-layer image (``docker import``)."""

from __future__ import annotations

import io
import platform
from typing import BinaryIO

from cli.config_changes import apply_changes
from cli.reference import parse_tagged
from cli.store.errors import StoreError
from cli.store.model import Image
from cli.store.store import Store, now_rfc3339

_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
                  "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_architecture() -> str:
    machine = platform.machine()
    return _ARCHITECTURES.get(machine, machine)


def buffered(stream: BinaryIO) -> BinaryIO:
    """Compression detection peeks at the first bytes; pipes need a buffer for that."""
    return stream if hasattr(stream, "peek") else io.BufferedReader(stream, 1 << 20)


def import_tarball(store: Store, stream: BinaryIO, *, ref: str | None = None,
                   changes: list[str] = (), message: str = "", source: str = "-",
                   compression: str = "gzip") -> Image:
    """Import a (plain, gzip, zstd, bzip2 or xz) rootfs tar as a new image; tag it REF."""
    from overlayfs.layer_tar import READ_ERRORS, LayerError, open_decompressed

    if ref is not None:
        parse_tagged(ref)  # refuse a bad name before reading anything
    created = now_rfc3339()
    comment = message or f"Imported from {source}"
    config = {
        "architecture": host_architecture(),
        "config": {},
        "created": created,
        "comment": comment,
        "history": [{"created": created, "comment": comment}],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    config = apply_changes(config, list(changes))
    try:
        layer = store.write_layer(open_decompressed(buffered(stream)), compression=compression)
    except (LayerError, *READ_ERRORS) as exc:
        raise StoreError(f"invalid tar archive: {exc}") from None
    except OSError as exc:
        if exc.errno is None:  # gzip.BadGzipFile, lzma/bz2 errors: bad input, not the system
            raise StoreError(f"invalid tar archive: {exc}") from None
        raise
    config["rootfs"]["diff_ids"] = [layer.diff_id]
    image = store.create_image(config=config, layers=[layer])
    if ref is not None:
        store.tag(image, ref)
    return store.get_image(image.id)
