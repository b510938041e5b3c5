"""``save`` and ``load``: docker-archive and OCI-archive tars of images.

save writes the classic ``docker save`` format (``manifest.json``, ``repositories``,
``<config hex>.json``, ``<v1 id>/layer.tar`` uncompressed + ``VERSION`` + ``json``) or,
with ``fmt="oci-archive"``, an OCI image layout in a tar (our blobs verbatim).

load reads both, plus Docker ≥ 25's combination of the two (a docker-archive whose
paths point into ``blobs/sha256``). The archive itself is never extracted to disk by
member name: members are looked up by name and read as streams, and layers go through
the store (which unpacks them safely), so hostile member names cannot escape.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import shutil
import tarfile
import zlib
from typing import BinaryIO

from cli.reference import parse_reference, parse_tagged, try_parse
from cli.store.blobs import CHUNK, sha256_digest, temp_name
from cli.store.errors import BlobCorrupt, StoreError
from cli.store.imports import buffered, host_architecture
from cli.store.model import (CONTAINERD_NAME_ANNOTATION, INDEX_TYPES, LAYER_TYPE_TO_OCI,
                             OCI_INDEX, OCI_LAYOUT_VERSION, REF_NAME_ANNOTATION, Image, Layer,
                             chain_id, hex_of)
from cli.store.store import Store

_EPOCH = 0


def _info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, mode: int = 0o644):
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode, info.mtime = size, kind, mode, _EPOCH
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


def _resolve_for_save(store: Store, names: list[str]) -> list[tuple[Image, list[str]]]:
    """Images in argument order; RepoTags are the tags the user named (Docker's rule)."""
    result: dict[str, tuple[Image, list[str]]] = {}
    for name in names:
        image = store.resolve_image(name)
        entry = result.setdefault(image.id, (image, []))
        ref = try_parse(name)
        if ref is not None and not ref.digest and not name.startswith("sha256:"):
            tag = ref.with_default_tag().familiar
            if tag in image.repo_tags and tag not in entry[1]:
                entry[1].append(tag)
    return list(result.values())


def save_images(store: Store, names: list[str], out: BinaryIO, *,
                fmt: str = "docker-archive") -> None:
    images = _resolve_for_save(store, names)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        if fmt == "oci-archive":
            _save_oci(store, images, tar)
        else:
            _save_docker(store, images, tar)


def _save_docker(store: Store, images, tar: tarfile.TarFile) -> None:
    from overlayfs.layer_tar import open_decompressed

    written: set[str] = set()
    manifest, repositories = [], {}
    for image, tags in images:
        layer_paths, parent_v1 = [], ""
        for layer in image.layers:
            v1 = hex_of(layer.chain_id)
            layer_paths.append(f"{v1}/layer.tar")
            if v1 not in written:
                written.add(v1)
                tar.addfile(_info(v1, kind=tarfile.DIRTYPE, mode=0o755))
                _add_bytes(tar, f"{v1}/VERSION", b"1.0")
                v1_json = {"id": v1, **({"parent": parent_v1} if parent_v1 else {}),
                           "created": "0001-01-01T00:00:00Z"}
                _add_bytes(tar, f"{v1}/json", json.dumps(v1_json).encode())
                tar_size = store.conn.execute("SELECT tar_size FROM layers WHERE chain_id=?",
                                              (layer.chain_id,)).fetchone()[0]
                with store.blobs.open_verified(layer.digest) as raw:
                    plain = open_decompressed(io.BufferedReader(raw, CHUNK))
                    tar.addfile(_info(f"{v1}/layer.tar", tar_size), plain)
                    raw.verify_rest()
            parent_v1 = v1
        config_name = f"{hex_of(image.id)}.json"
        if config_name not in written:
            written.add(config_name)
            _add_bytes(tar, config_name, store.blobs.read_bytes(image.id))
        manifest.append({"Config": config_name, "RepoTags": tags or None,
                         "Layers": layer_paths})
        for tag in tags:
            ref = parse_reference(tag)
            repositories.setdefault(ref.familiar_name, {})[ref.tag] = parent_v1
    _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
    if repositories:
        _add_bytes(tar, "repositories", json.dumps(repositories).encode())


def _save_oci(store: Store, images, tar: tarfile.TarFile) -> None:
    _add_bytes(tar, "oci-layout", json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}).encode())
    tar.addfile(_info("blobs", kind=tarfile.DIRTYPE, mode=0o755))
    tar.addfile(_info("blobs/sha256", kind=tarfile.DIRTYPE, mode=0o755))
    written: set[str] = set()
    descriptors = []
    for image, tags in images:
        digests = [image.manifest_digest, image.id] + [layer.digest for layer in image.layers]
        for digest in digests:
            if digest in written:
                continue
            written.add(digest)
            path = store.blobs.path(digest)
            with store.blobs.open_verified(digest) as raw:
                tar.addfile(_info(f"blobs/sha256/{hex_of(digest)}", path.stat().st_size), raw)
                raw.verify_rest()
        size = store.blobs.path(image.manifest_digest).stat().st_size
        base = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": image.manifest_digest, "size": size}
        for tag in tags:
            descriptors.append({**base, "annotations": {
                CONTAINERD_NAME_ANNOTATION: str(parse_tagged(tag)), REF_NAME_ANNOTATION: tag}})
        if not tags:
            descriptors.append(base)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    _add_bytes(tar, "index.json", json.dumps(index).encode())


# -- load ------------------------------------------------------------------------------

class _Archive:
    """Random access to the members of an archive tar, by normalized name."""

    def __init__(self, tar: tarfile.TarFile):
        self._tar = tar
        self._members: dict[str, tarfile.TarInfo] = {}
        for member in tar.getmembers():
            self._members[_normalize(member.name)] = member

    def has(self, name: str) -> bool:
        return self._lookup(name) is not None

    def _lookup(self, name: str, depth: int = 0) -> tarfile.TarInfo | None:
        member = self._members.get(_normalize(name))
        if member is None or depth > 16:
            return None
        if member.issym():
            target = posixpath.join(posixpath.dirname(_normalize(name)), member.linkname)
            return self._lookup(target, depth + 1)
        if member.islnk():
            return self._lookup(member.linkname, depth + 1)
        return member if member.isfile() else None

    def open(self, name: str) -> BinaryIO:
        member = self._lookup(name)
        if member is None:
            raise StoreError(f"invalid archive: {name} is missing")
        return self._tar.extractfile(member)

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise StoreError(f"invalid archive: {name} is too large")
        return data

    def read_json(self, name: str):
        try:
            return json.loads(self.read(name))
        except ValueError as exc:
            raise StoreError(f"invalid archive: {name}: {exc}") from None


def _normalize(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def load_archive(store: Store, stream: BinaryIO) -> list[str]:
    """Load every image of a docker-archive or OCI archive; returns Docker's report lines."""
    spooled = None
    try:
        if not _seekable(stream):
            spooled = temp_name(store.tmp_dir, ".archive")
            with open(spooled, "wb") as f:
                shutil.copyfileobj(stream, f, CHUNK)
            stream = open(spooled, "rb")
        with contextlib.closing(stream) if spooled else contextlib.nullcontext():
            try:
                tar = tarfile.open(fileobj=stream, mode="r:*")
                archive = _Archive(tar)
            except tarfile.ReadError:
                raise StoreError("invalid archive: not a tar archive (or damaged)") from None
            except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
                raise StoreError(f"invalid archive: {_first_line(exc)}") from None
            if archive.has("manifest.json"):
                return _load_docker(store, archive)
            if archive.has("index.json"):
                return _load_oci(store, archive)
            raise StoreError("invalid archive: neither manifest.json nor index.json found")
    finally:
        if spooled is not None:
            spooled.unlink(missing_ok=True)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _seekable(stream: BinaryIO) -> bool:
    try:
        return stream.seekable() and os.path.isfile(f"/proc/self/fd/{stream.fileno()}")
    except (AttributeError, OSError, ValueError):
        return False


def _layer_errors():
    from overlayfs.layer_tar import READ_ERRORS, LayerError
    return (LayerError, *READ_ERRORS)


def _load_docker(store: Store, archive: _Archive) -> list[str]:
    from overlayfs.layer_tar import open_decompressed

    manifest = archive.read_json("manifest.json")
    if not isinstance(manifest, list):
        raise StoreError("invalid archive: manifest.json is not a list")
    lines = []
    for entry in manifest:
        config_bytes = archive.read(entry["Config"])
        diff_ids = _diff_ids(config_bytes)
        paths = entry.get("Layers") or []
        if len(paths) != len(diff_ids):
            raise StoreError("invalid archive: layer count differs from the config's diff_ids")
        layers: list[Layer] = []
        parent = None
        for path, diff_id in zip(paths, diff_ids):
            layer = store.find_layer(chain_id(parent.chain_id if parent else None, diff_id))
            if layer is None:
                try:
                    with archive.open(path) as f:
                        layer = store.write_layer(open_decompressed(buffered(f)), parent=parent)
                except _layer_errors() as exc:
                    raise StoreError(f"invalid layer {path}: {exc}") from None
                if layer.diff_id != diff_id:
                    raise BlobCorrupt(f"layer {path}: content is {layer.diff_id}, the image "
                                      f"config says {diff_id}")
            layers.append(layer)
            parent = layer
        image = store.create_image_from_bytes(config_bytes, layers)
        lines += _tag_loaded(store, image, entry.get("RepoTags") or [])
    return lines


def _diff_ids(config_bytes: bytes) -> list[str]:
    try:
        config = json.loads(config_bytes)
        return list(config["rootfs"]["diff_ids"])
    except (ValueError, KeyError, TypeError):
        raise StoreError("invalid archive: image config without rootfs.diff_ids") from None


def _tag_loaded(store: Store, image: Image, names: list[str]) -> list[str]:
    lines = []
    for name in names:
        ref = parse_tagged(name)
        store.tag(image, name)
        lines.append(f"Loaded image: {ref.familiar}")
    return lines or [f"Loaded image ID: {image.id}"]


def _read_blob(archive: _Archive, digest: str) -> bytes:
    data = archive.read(f"blobs/sha256/{hex_of(digest)}")
    if sha256_digest(data) != digest:
        raise BlobCorrupt(f"blob {digest} in archive: digest mismatch")
    return data


def _pick_manifest(archive: _Archive, desc: dict, depth: int = 0) -> tuple[dict, bytes]:
    data = _read_blob(archive, desc["digest"])
    doc = json.loads(data)
    media_type = doc.get("mediaType") or desc.get("mediaType")
    if media_type in INDEX_TYPES or "manifests" in doc:
        if depth > 4 or not doc.get("manifests"):
            raise StoreError("invalid archive: empty or too deeply nested image index")
        arch = host_architecture()
        candidates = [m for m in doc["manifests"]
                      if (m.get("platform") or {}).get("architecture") in (arch, None)
                      and (m.get("platform") or {}).get("os") in ("linux", None)]
        return _pick_manifest(archive, (candidates or doc["manifests"])[0], depth + 1)
    return doc, data


def _load_oci(store: Store, archive: _Archive) -> list[str]:
    index = archive.read_json("index.json")
    lines = []
    for desc in index.get("manifests") or []:
        manifest, manifest_bytes = _pick_manifest(archive, desc)
        config_bytes = _read_blob(archive, manifest["config"]["digest"])
        diff_ids = _diff_ids(config_bytes)
        descriptors = manifest.get("layers") or []
        if len(descriptors) != len(diff_ids):
            raise StoreError("invalid archive: layer count differs from the config's diff_ids")
        layers: list[Layer] = []
        parent = None
        for layer_desc, diff_id in zip(descriptors, diff_ids):
            layer = store.find_layer(chain_id(parent.chain_id if parent else None, diff_id))
            if layer is None:
                media_type = LAYER_TYPE_TO_OCI.get(layer_desc.get("mediaType"))
                if media_type is None:
                    raise StoreError(f"unsupported layer media type {layer_desc.get('mediaType')}")
                try:
                    with archive.open(f"blobs/sha256/{hex_of(layer_desc['digest'])}") as f:
                        layer = store.put_layer_blob(f, media_type=media_type, diff_id=diff_id,
                                                     parent=parent, digest=layer_desc["digest"])
                except _layer_errors() as exc:
                    raise StoreError(f"invalid layer {layer_desc['digest']}: {exc}") from None
            layers.append(layer)
            parent = layer
        image = store.create_image_from_bytes(config_bytes, layers, manifest_bytes)
        annotations = desc.get("annotations") or {}
        name = annotations.get(CONTAINERD_NAME_ANNOTATION) or annotations.get(REF_NAME_ANNOTATION)
        # A bare ref.name like "latest" (skopeo's oci-archive:FILE:latest) is no image name.
        names = [name] if name and (":" in name or "/" in name) else []
        lines += _tag_loaded(store, image, names)
    return lines
