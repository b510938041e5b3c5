"""The image store: an OCI image layout, unpacked layers, and SQLite metadata.

Layout of a store root (``--root``, ``$LAYERBOX_ROOT``, default ``/var/lib/layerbox``)::

    oci/oci-layout          {"imageLayoutVersion": "1.0.0"}
    oci/index.json          one descriptor per tag, annotated
                              org.opencontainers.image.ref.name = "busybox:latest"
                              io.containerd.image.name         = "docker.io/library/busybox:latest"
                            plus one unannotated descriptor per untagged image;
                            derived from the database, rewritten atomically on every change
    oci/blobs/sha256/HEX    manifests (OCI media types), configs, layer blobs (gzip by
                            default, zstd on request); content-addressed, never modified
    layers/CHAINHEX/diff    each layer unpacked once (whiteouts in overlay form), shared by
                            every image whose chain contains it; removed with its last user.
                            A layer made by commit or a build's RUN gets its dir from its
                            blob on first use (Store.layer_dirs), not when it is written
    containers/ID/          owned by cli/containers.py
    tmp/PID-RANDOM.*        temp blobs, half-unpacked layers, trash; a dead PID's entries
                            are removed by the next Store.open()
    layerbox.db             SQLite, WAL mode, every change one BEGIN IMMEDIATE transaction

Names in ``ref.name`` are Docker's familiar form, so other tools read our images as
``skopeo inspect oci:ROOT/oci:busybox:latest``, ``skopeo copy oci:ROOT/oci:me/hello:v1
dir:/tmp/x``, ``umoci unpack --image ROOT/oci:busybox:latest bundle``. Images written
into the layout by other tools are not picked up; bring them in with ``layerbox load``.

Database tables (``layerbox.db``)::

    layers(chain_id PK, diff_id, parent, size, tar_size, created)
        the unpacked dir exists, or is made from an image's blob of the layer on first
        use; size = Docker's layer size (bytes of files), known either way
    images(id PK = "sha256:"+config digest hex, manifest_digest, manifest_size,
           manifest_media_type, config_size, created, size, added)
    image_layers(image_id, position, chain_id, digest, size, media_type)
        the manifest's layers, bottom first; the "users" of a layer
    tags(name PK = full reference "docker.io/library/busybox:latest", image_id, tagged_at)
    repo_digests(name PK = "docker.io/library/busybox@sha256:…", image_id)
    containers(id PK, name UNIQUE, image_id, created, record)  -- rows owned by containers
    leases(kind 'layer'|'blob', key, pid)
        a writer's claim on a layer/blob between writing it and create_image();
        collection skips leased keys; leases of dead pids are dropped on open

Crash safety: blobs are written to ``tmp/``, fsynced and renamed to their digest; a layer
is unpacked into ``tmp/`` and renamed to ``layers/`` after syncfs (on first use: under
a flock of ``layers/``, so concurrent first uses unpack once); database rows appear
only after the files they name, and index.json only lists committed images. A killed
writer leaves only ``tmp/`` entries and leases, which the next run cleans up. Reading a
blob for unpacking verifies its digest (and the diff_id of its uncompressed content).
``layerbox system check`` verifies all blobs and compares the database with the files.
"""

from cli.store.errors import BlobCorrupt, ImageConflict, NoSuchImage, StoreError

__all__ = ["Store", "Image", "Layer", "StoreError", "BlobCorrupt", "NoSuchImage",
           "ImageConflict", "open_store"]

_LAZY = {"Store": "cli.store.store", "Image": "cli.store.model", "Layer": "cli.store.model"}


def __getattr__(name: str):
    # Lazy, so that light readers (cli.store.query for `layerbox images`) do not pay
    # for pathlib, dataclasses and the rest of the store at start-up.
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


def open_store(args):
    """The store for a parsed command line (``--root``)."""
    from cli.store.store import Store
    return Store.open(args.root)
