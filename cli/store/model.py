"""Immutable values the store hands out, and the media types it speaks."""

from __future__ import annotations

from cli.values import Record

OCI_LAYOUT_VERSION = "1.0.0"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER + "+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
#: Docker's layer media types and their OCI names (we store OCI names).
LAYER_TYPE_TO_OCI = {
    DOCKER_LAYER_GZIP: OCI_LAYER_GZIP, DOCKER_LAYER: OCI_LAYER, DOCKER_LAYER_ZSTD: OCI_LAYER_ZSTD,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": OCI_LAYER_GZIP,
    OCI_LAYER: OCI_LAYER, OCI_LAYER_GZIP: OCI_LAYER_GZIP, OCI_LAYER_ZSTD: OCI_LAYER_ZSTD,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": OCI_LAYER_GZIP,
}
COMPRESSION_MEDIA_TYPES = {"gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD, "none": OCI_LAYER}

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name"


def chain_id(parent_chain_id: str | None, diff_id: str) -> str:
    """The OCI ChainID: the layer's identity including everything below it."""
    if parent_chain_id is None:
        return diff_id
    from cli.store.blobs import sha256_digest   # no OpenSSL for a few bytes
    return sha256_digest(f"{parent_chain_id} {diff_id}".encode())


def hex_of(digest: str) -> str:
    return digest.partition(":")[2]


def short_id(image_id: str) -> str:
    """Docker's 12-character id as `images` shows it."""
    return hex_of(image_id)[:12]


class Layer(Record):
    """digest, size: the compressed blob's; diff_id: the uncompressed tar's digest."""
    FIELDS = __slots__ = ("digest", "size", "diff_id", "media_type", "chain_id")
    digest: str
    size: int
    diff_id: str
    media_type: str
    chain_id: str


class Image(Record):
    """id: "sha256:" + the config's digest hex; layers bottom first; repo_tags in the
    familiar form ("busybox:latest"). The config takes no part in equality."""
    FIELDS = __slots__ = ("id", "manifest_digest", "config", "layers", "repo_tags")
    DEFAULTS = ((), ())
    COMPARED = ("id", "manifest_digest", "layers", "repo_tags")
    id: str
    manifest_digest: str
    config: dict
    layers: tuple[Layer, ...]
    repo_tags: tuple[str, ...]

    @property
    def short_id(self) -> str:
        return short_id(self.id)
