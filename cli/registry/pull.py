"""``pull``: registry → store, streaming each layer through its digest check into the store.

Order of events (Docker's): resolve the tag to a manifest (an index or manifest list
resolves to our platform), fetch and verify the config, then for each layer either find
its chain id in the store ("Already exists") or stream the blob into
:meth:`Store.put_layer_blob`, which verifies the digest, unpacks once and checks the
diff_id. The image row and the tag are written only after every layer is in, so an
interrupted pull leaves no half image; its finished layers are collected and a retry
downloads again. A broken download resumes once with an HTTP Range request.
"""

from __future__ import annotations

import hashlib
import json

from cli import logs
from cli.reference import Reference, parse_reference
from cli.registry.client import RegistryClient, RegistryError, TransferError
from cli.registry.progress import Progress
from cli.store.errors import BlobCorrupt, NoSuchImage
from cli.store.imports import host_architecture
from cli.store.model import (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, INDEX_TYPES,
                             LAYER_TYPE_TO_OCI, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST, Image,
                             chain_id)
from cli.store.store import Store
from cli.store.transfer import record_repo_digest, short

log = logs.get(__name__)

MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST))
MAX_MANIFEST = 4 << 20
MAX_CONFIG = 32 << 20
READ_CHUNK = 1 << 20


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fetch_manifest(client: RegistryClient, ref: Reference, reference: str) -> tuple[bytes, str]:
    """GET a manifest by tag or digest; returns (bytes, digest), verifying a digest reference."""
    resp = client.request("GET", f"manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT})
    if resp.status == 404:
        resp.close()
        raise RegistryError(f"manifest for {ref} not found: manifest unknown", status=404)
    with client.check(resp, (200,), f"fetching manifest for {ref}") as resp:
        data = resp.read(MAX_MANIFEST + 1)
    if len(data) > MAX_MANIFEST:
        raise RegistryError(f"manifest for {ref} is larger than {MAX_MANIFEST} bytes")
    digest = _sha256(data)
    expected = reference if reference.startswith("sha256:") else \
        resp.headers.get("Docker-Content-Digest")
    if expected and expected.startswith("sha256:") and expected != digest:
        raise BlobCorrupt(f"manifest for {ref}: digest mismatch: expected {expected}, "
                          f"got {digest}")
    return data, digest


def _parse_json(data: bytes, what: str) -> dict:
    try:
        doc = json.loads(data)
    except ValueError:
        raise RegistryError(f"{what} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{what} is not a JSON object")
    return doc


def choose_platform(index: dict, ref: Reference) -> str:
    """The digest of the index entry for linux/<our architecture>."""
    arch = host_architecture()
    for entry in index.get("manifests") or []:
        platform = entry.get("platform") or {}
        if platform.get("os") == "linux" and platform.get("architecture") == arch:
            return entry["digest"]
    raise RegistryError(f"no matching manifest for linux/{arch} in the manifest list entries "
                        f"of {ref}")


def resolve_manifest(client: RegistryClient, ref: Reference) -> tuple[dict, bytes, str]:
    """(manifest, its bytes, the digest the reference names: the index's for a multi-arch tag)."""
    data, top_digest = fetch_manifest(client, ref, ref.digest or ref.tag)
    doc = _parse_json(data, f"manifest for {ref}")
    media_type = doc.get("mediaType")
    if media_type in INDEX_TYPES or (media_type is None and "manifests" in doc):
        data, _ = fetch_manifest(client, ref, choose_platform(doc, ref))
        doc = _parse_json(data, f"manifest for {ref}")
        media_type = doc.get("mediaType")
    if doc.get("schemaVersion") != 2 or (media_type not in MANIFEST_TYPES
                                         and not (media_type is None and "layers" in doc)):
        raise RegistryError(f"unsupported manifest type for {ref}: "
                            f"{media_type or doc.get('schemaVersion')}")
    return doc, data, top_digest


def fetch_small_blob(client: RegistryClient, digest: str, what: str) -> bytes:
    with client.check(client.request("GET", f"blobs/{digest}"), (200,), what) as resp:
        data = resp.read(MAX_CONFIG + 1)
    if _sha256(data) != digest:
        raise BlobCorrupt(f"{what}: digest mismatch: expected {digest}, got {_sha256(data)}")
    return data


class BlobStream:
    """A registry blob as a readable stream with progress, resuming once if the link breaks.

    The descriptor's size bounds what we read; the store checks the digest.
    """

    def __init__(self, client: RegistryClient, digest: str, size: int, progress: Progress):
        self._client = client
        self._digest = digest
        self._size = size
        self._progress = progress
        self._ident = short(digest)
        self._resp = None
        self._offset = 0
        self._retried = False

    def _open(self) -> None:
        headers = {"Range": f"bytes={self._offset}-"} if self._offset else {}
        resp = self._client.request("GET", f"blobs/{self._digest}", headers=headers)
        self._resp = self._client.check(resp, (200, 206), f"fetching blob {self._digest}")
        if self._offset and resp.status == 200:  # the server ignored Range: skip what we have
            skip = self._offset
            while skip:
                skip -= len(self._read_raw(min(skip, READ_CHUNK)))

    def _read_raw(self, n: int) -> bytes:
        data = self._resp.read(n)
        if not data and self._offset < self._size:
            raise TransferError(f"blob {self._digest}: connection closed after "
                                f"{self._offset} of {self._size} bytes")
        return data

    def read(self, n: int = -1) -> bytes:
        n = READ_CHUNK if n is None or n < 0 else n
        n = min(n, self._size - self._offset)
        if n <= 0:
            self.close()
            return b""
        try:
            if self._resp is None:
                self._open()
            data = self._read_raw(n)
        except TransferError as exc:
            if self._retried:
                raise
            log.debug("retrying %s at byte %d: %s", self._digest, self._offset, exc)
            self._retried = True
            self.close()
            self._open()
            data = self._read_raw(n)
        self._offset += len(data)
        self._progress.bytes(self._ident, "Downloading", self._offset, self._size)
        if self._offset >= self._size:
            self._progress.status(self._ident, "Verifying Checksum")
            self._progress.status(self._ident, "Download complete")
        return data

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None


def _layer_plan(manifest: dict, config: dict, ref: Reference) -> list[tuple[dict, str]]:
    descriptors = manifest.get("layers") or []
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(descriptors) != len(diff_ids):
        raise RegistryError(f"image {ref}: the manifest has {len(descriptors)} layers, the "
                            f"config {len(diff_ids)} diff_ids")
    for desc in descriptors:
        if not isinstance(desc.get("size"), int) or desc["size"] < 0 \
                or not str(desc.get("digest", "")).startswith("sha256:"):
            raise RegistryError(f"image {ref}: layer descriptor without sha256 digest and size")
        if LAYER_TYPE_TO_OCI.get(desc.get("mediaType")) is None:
            raise RegistryError(f"image {ref}: unsupported layer media type "
                                f"{desc.get('mediaType')}")
    return list(zip(descriptors, diff_ids))


def pull(store: Store, name: str, client_for, progress: Progress) -> Image:
    """Pull NAME into STORE; CLIENT_FOR(ref) makes the pull client. Returns the image."""
    ref = parse_reference(name)
    if ref.tag is None and ref.digest is None:
        progress.line("Using default tag: latest")
        ref = ref.with_default_tag()
    client: RegistryClient = client_for(ref)
    manifest, manifest_bytes, top_digest = resolve_manifest(client, ref)
    progress.line(f"{ref.digest or ref.tag}: Pulling from {ref.path}")
    config_desc = manifest.get("config") or {}
    if not str(config_desc.get("digest", "")).startswith("sha256:"):
        raise RegistryError(f"image {ref}: manifest without a config digest")
    config_bytes = fetch_small_blob(client, config_desc["digest"], f"image config of {ref}")
    plan = _layer_plan(manifest, _parse_json(config_bytes, f"image config of {ref}"), ref)

    found, parent = [], None
    for desc, diff_id in plan:
        layer = store.find_layer(chain_id(parent, diff_id))
        found.append(layer)
        parent = chain_id(parent, diff_id)
        progress.status(short(desc["digest"]), "Already exists" if layer else "Pulling fs layer")
    layers, parent_layer = [], None
    for (desc, diff_id), layer in zip(plan, found):
        if layer is None:
            stream = BlobStream(client, desc["digest"], desc["size"], progress)
            try:
                layer = store.put_layer_blob(stream, media_type=LAYER_TYPE_TO_OCI[desc["mediaType"]],
                                             diff_id=diff_id, parent=parent_layer,
                                             digest=desc["digest"])
            finally:
                stream.close()
            progress.status(short(desc["digest"]), "Pull complete")
        layers.append(layer)
        parent_layer = layer
    image = store.create_image_from_bytes(config_bytes, layers, manifest_bytes)
    progress.line(f"Digest: {top_digest}")
    record_repo_digest(store, ref.name, top_digest, image)
    up_to_date = False
    if ref.digest is None:  # Docker tags nothing for NAME[:TAG]@DIGEST
        try:
            up_to_date = store.resolve_image_id(str(ref)) == image.id
        except NoSuchImage:
            pass
        store.tag(image, str(ref))
    shown = ref.familiar
    progress.line(f"Status: Image is up to date for {shown}" if up_to_date else
                  f"Status: Downloaded newer image for {shown}")
    progress.line(str(ref))
    return store.get_image(image.id)

