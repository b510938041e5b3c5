"""``push``: store → registry, blob by blob, then the manifest exactly as stored.

For each layer (top first, as Docker lists them) and then the config: HEAD the blob
("Layer already exists"); else try a cross-repository mount from a repository on the same
registry that we know holds it ("Mounted from other/repo"); else upload it: one PUT for
a blob up to the chunk size (monolithic), PATCH chunks with ``Content-Range`` for larger
ones, each chunk retried once after asking the registry how much it has. The manifest is
pushed by tag with the bytes the store keeps, so its digest is the one ``image inspect``
shows.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from cli import logs
from cli.errors import UserError
from cli.reference import parse_reference
from cli.registry.client import Body, RegistryClient, RegistryError, TransferError, with_query
from cli.registry.progress import Progress
from cli.store.errors import NoSuchImage
from cli.store.model import Image
from cli.store.store import Store
from cli.store.transfer import (blob_size, manifest_bytes, manifest_media_type, mount_sources,
                                record_repo_digest, short)

log = logs.get(__name__)

DEFAULT_CHUNK_SIZE = 16 << 20


def chunk_size() -> int:
    """Blobs up to this size go in one PUT; larger ones in PATCH chunks of this size."""
    value = os.environ.get("LAYERBOX_PUSH_CHUNK_SIZE")
    return int(value) if value and value.isdigit() and int(value) > 0 else DEFAULT_CHUNK_SIZE


class _Slice:
    """LENGTH bytes of a file from START, as a request body; reports progress; rewindable."""

    def __init__(self, f: BinaryIO, start: int, length: int, on_read):
        self._f = f
        self._start = start
        self._length = length
        self._on_read = on_read
        self.seek(0)

    def seek(self, pos: int) -> None:
        self._pos = pos
        self._f.seek(self._start + pos)

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        left = self._length - self._pos
        n = left if n is None or n < 0 else min(n, left)
        data = self._f.read(n) if n > 0 else b""
        self._pos += len(data)
        self._on_read(self._start + self._pos)
        return data


class BlobPusher:
    def __init__(self, store: Store, client: RegistryClient, progress: Progress, chunk: int):
        self.store = store
        self.client = client
        self.progress = progress
        self.chunk = chunk

    def push(self, digest: str, ident: str | None) -> str:
        """Make DIGEST exist in the repository; returns Docker's final status for it."""
        resp = self.client.request("HEAD", f"blobs/{digest}")
        resp.close()
        if resp.status == 200:
            return "Layer already exists"
        if resp.status != 404:
            self.client.check(resp, (200, 404), f"checking blob {digest}")
        location = None
        for source in mount_sources(self.store, self.client.host, digest):
            if source == self.client.repository:
                continue
            try:
                resp = self.client.request("POST", with_query("blobs/uploads/", mount=digest,
                                                              **{"from": source}),
                                           extra_scopes=(f"repository:{source}:pull",))
            except RegistryError as exc:
                if exc.status not in (401, 403):
                    raise
                log.debug("no access to %s for a mount: %s", source, exc)
                break  # we may not read the source repository: upload instead
            with self.client.check(resp, (201, 202), f"mounting blob {digest}") as resp:
                resp.read()
                if resp.status == 201:
                    return f"Mounted from {source}"
                location = self.client.location(resp)  # mount refused: an upload instead
            break
        if location is None:
            resp = self.client.request("POST", "blobs/uploads/")
            with self.client.check(resp, (202,), f"starting upload of {digest}") as resp:
                resp.read()
                location = self.client.location(resp)
        size = blob_size(self.store, digest)
        with open(self.store.blobs.path(digest), "rb") as f:
            if size <= self.chunk:
                self._put(location, digest, f, size, ident)
            else:
                self._put(self._patch_chunks(location, f, size, ident), digest, None, 0, ident)
        return "Pushed"

    def _report(self, ident: str | None, size: int):
        if ident is None:
            return lambda done: None
        return lambda done: self.progress.bytes(ident, "Pushing", done, size)

    def _put(self, location: str, digest: str, f, size: int, ident: str | None) -> None:
        """Finish the upload at LOCATION (sending the whole blob if F is given)."""
        body = Body(_Slice(f, 0, size, self._report(ident, size)), size) if f else None
        url = with_query(location, digest=digest)
        try:
            resp = self.client.request("PUT", url, body=body)
        except TransferError:
            if f is None:
                raise
            log.debug("retrying the upload of %s once", digest)
            resp = self.client.request("POST", "blobs/uploads/")
            with self.client.check(resp, (202,), f"starting upload of {digest}") as resp:
                resp.read()
                url = with_query(self.client.location(resp), digest=digest)
            body.data.seek(0)
            resp = self.client.request("PUT", url, body=body)
        with self.client.check(resp, (201,), f"uploading blob {digest}") as resp:
            resp.read()

    def _patch_chunks(self, location: str, f, size: int, ident: str | None) -> str:
        offset = 0
        while offset < size:
            length = min(self.chunk, size - offset)
            try:
                location = self._patch(location, f, offset, length, size, ident)
            except TransferError as exc:
                log.debug("chunk at %d failed (%s); asking the registry and retrying once",
                          offset, exc)
                offset = self._upload_offset(location, offset)
                length = min(self.chunk, size - offset)
                location = self._patch(location, f, offset, length, size, ident)
            offset += length
        return location

    def _patch(self, location: str, f, offset: int, length: int, size: int,
               ident: str | None) -> str:
        body = Body(_Slice(f, offset, length, self._report(ident, size)), length)
        headers = {"Content-Range": f"{offset}-{offset + length - 1}"}
        resp = self.client.request("PATCH", location, headers=headers, body=body)
        if resp.status >= 500:
            resp.close()
            raise TransferError(f"registry answered {resp.status} to a chunk")
        with self.client.check(resp, (202,), "uploading a chunk") as resp:
            resp.read()
            return self.client.location(resp)

    def _upload_offset(self, location: str, failed_at: int) -> int:
        """How many bytes of the upload the registry has (``Range: 0-N``).

        distribution answers ``0-0`` for both 0 and 1 bytes; a chunk that failed at
        offset 0 means nothing arrived (chunks are never one byte long).
        """
        with self.client.check(self.client.request("GET", location), (204,),
                               "checking upload status") as resp:
            resp.read()
            _, _, end = (resp.headers.get("Range") or "0--1").partition("-")
        if not end.lstrip("-").isdigit() or (int(end) == 0 and failed_at == 0):
            return 0
        return int(end) + 1


def push(store: Store, name: str, client_for, progress: Progress) -> str:
    """Push NAME (a local tag) to its registry; returns the manifest digest."""
    ref = parse_reference(name)
    if ref.digest is not None:
        raise UserError(f"cannot push a digest reference: {name}")
    if ref.tag is None:
        progress.line("Using default tag: latest")
        ref = ref.with_default_tag()
    try:
        image: Image = store.resolve_image(str(ref))
    except NoSuchImage:
        raise UserError(f"An image does not exist locally with the tag: {ref.familiar_name}") \
            from None
    progress.line(f"The push refers to repository [{ref.name}]")
    client: RegistryClient = client_for(ref)
    pusher = BlobPusher(store, client, progress, chunk_size())
    layers = list(reversed(image.layers))
    for layer in layers:
        progress.status(short(layer.diff_id), "Preparing")
    for layer in layers:
        progress.status(short(layer.diff_id), pusher.push(layer.digest, short(layer.diff_id)))
    pusher.push(image.id, None)
    data = manifest_bytes(store, image)
    resp = client.request("PUT", f"manifests/{ref.tag}",
                          body=Body(data, len(data), manifest_media_type(store, image)))
    with client.check(resp, (201,), f"pushing manifest for {ref}") as resp:
        resp.read()
        sent = resp.headers.get("Docker-Content-Digest")
    if sent and sent != image.manifest_digest:
        raise RegistryError(f"registry stored manifest {sent}, expected {image.manifest_digest}")
    progress.line(f"{ref.tag}: digest: {image.manifest_digest} size: {len(data)}")
    record_repo_digest(store, ref.name, image.manifest_digest, image)
    return image.manifest_digest
