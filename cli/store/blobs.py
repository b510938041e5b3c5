"""Content-addressed blobs under ``oci/blobs/sha256`` (umoci's CAS contract).

``put`` is idempotent and atomic: bytes go to a temp file in ``<root>/tmp`` (same
filesystem), are fsynced, then renamed to their digest; a blob that already exists
is kept. ``open_verified`` hashes while reading and raises :class:`BlobCorrupt` at the
end if the bytes do not match, so nothing unpacked from a damaged blob is kept.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

# Names for annotations only: importing typing is 2-4 ms of every command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

from cli.store.errors import BlobCorrupt

CHUNK = 1 << 20


def temp_name(tmp_dir: Path, suffix: str) -> Path:
    """A temp path whose name starts with our pid, so cleanup knows whether its writer lives."""
    return tmp_dir / f"{os.getpid()}-{os.urandom(8).hex()}{suffix}"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_digest(path) -> str:
    """The sha256 digest of the file at PATH, read in CHUNK pieces."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


#: Below this size sha256_digest uses CPython's own SHA-256, not OpenSSL's.
SMALL_BLOB = 64 << 10


_small_sha256 = None


def _builtin_sha256():
    """CPython's own SHA-256 constructor, found once (a failed import is not cached)."""
    global _small_sha256
    if _small_sha256 is None:
        try:
            from _sha256 import sha256          # CPython 3.11
        except ImportError:
            try:
                from _sha2 import sha256        # CPython 3.12+
            except ImportError:
                from hashlib import sha256
        _small_sha256 = sha256
    return _small_sha256


def sha256_digest(data: bytes) -> str:
    if len(data) < SMALL_BLOB:
        # Configs and manifests: importing hashlib loads OpenSSL (2-13 ms on this VM,
        # more than `history` spends on anything else); the builtin module costs <1 ms
        # to import and microseconds per config. OpenSSL stays for big data (faster).
        return "sha256:" + _builtin_sha256()(data).hexdigest()
    import hashlib
    return "sha256:" + hashlib.sha256(data).hexdigest()


class HashingWriter(io.RawIOBase):
    """A write-only stream that counts and hashes what it passes on to ``out``."""

    def __init__(self, out: BinaryIO):
        super().__init__()
        self._out = out
        import hashlib
        self._hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if not data:
            return 0
        self._hash.update(data)
        self._out.write(data)
        self.size += len(data)
        return len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


class VerifyingReader(io.RawIOBase):
    """Reads a blob, hashing it; at EOF the hash must equal the expected digest."""

    def __init__(self, raw: BinaryIO, digest: str, label: str):
        super().__init__()
        self._raw = raw
        self._expected = digest
        self._label = label
        import hashlib
        self._hash = hashlib.sha256()
        self.size = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer)
        if n:
            self._hash.update(memoryview(buffer)[:n])
            self.size += n
        elif not self._done:
            self._done = True
            actual = "sha256:" + self._hash.hexdigest()
            if actual != self._expected:
                raise BlobCorrupt(f"{self._label}: digest mismatch: expected {self._expected}, "
                                  f"got {actual}")
        return n

    def verify_rest(self) -> None:
        """Read whatever the consumer left (tar padding) so the digest gets checked."""
        while self.read(CHUNK):
            pass
        self.read(1)

    def close(self) -> None:
        self._raw.close()
        super().close()


class BlobStore:
    def __init__(self, blobs_dir: Path, tmp_dir: Path):
        self.dir = blobs_dir
        self.tmp_dir = tmp_dir

    def path(self, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
            raise BlobCorrupt(f"unsupported or malformed digest: {digest}")
        return self.dir / hexpart

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store small bytes (manifests, configs); idempotent."""
        digest = sha256_digest(data)
        target = self.path(digest)
        if not target.exists():
            tmp = temp_name(self.tmp_dir, ".blob")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
            fsync_dir(self.dir)
        return digest, len(data)

    def commit_temp(self, tmp: Path, digest: str) -> Path:
        """Move a fully written, fsynced temp file into place under its digest."""
        target = self.path(digest)
        if target.exists():
            tmp.unlink(missing_ok=True)
        else:
            os.replace(tmp, target)
            fsync_dir(self.dir)
        return target

    def read_bytes(self, digest: str) -> bytes:
        data = self.path(digest).read_bytes()
        if sha256_digest(data) != digest:
            raise BlobCorrupt(f"blob {digest}: digest mismatch")
        return data

    def open_verified(self, digest: str) -> VerifyingReader:
        path = self.path(digest)
        try:
            raw = open(path, "rb", buffering=0)
        except FileNotFoundError:
            raise BlobCorrupt(f"blob {digest} is missing") from None
        return VerifyingReader(raw, digest, f"blob {digest}")

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)
