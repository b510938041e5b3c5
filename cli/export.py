"""``docker export``: a container's whole filesystem, as its processes see it, as one tar.

A running container's own mount is read (after a syncfs, as diff does). A stopped
container has no mount, so its upper dir is mounted read-only above its init and image
layers — the same union the container saw, without touching its upper dir.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from cli import logs
from cli import containers
from cli.errors import UserError

log = logs.get(__name__)


def export_container(store, container: containers.Container, out: BinaryIO) -> None:
    """Write the merged root filesystem of CONTAINER to OUT as an uncompressed tar."""
    from overlayfs.layer_tar import LayerError, export_layer
    with _merged_view(store, container) as root:
        try:
            export_layer(root, out)
        except LayerError as exc:
            raise UserError(str(exc)) from None


@contextlib.contextmanager
def _merged_view(store, container: containers.Container) -> Iterator[Path]:
    merged = container.dir / "merged"
    if container.status() in ("running", "paused") and containers.is_mounted(merged):
        containers.syncfs(merged)
        yield merged
        return
    if container.problem():
        log.warning("container %s: %s", container.short_id, container.problem())
    layers = [container.dir / "upper"] + container.lower_dirs(store)
    view = Path(tempfile.mkdtemp(prefix="export-", dir=container.dir))
    try:
        containers.mount_union(layers, view)
        yield view
    finally:
        containers.unmount(view)
        with contextlib.suppress(OSError):
            os.rmdir(view)
