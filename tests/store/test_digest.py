"""sha256_digest: CPython's own SHA-256 for small blobs, OpenSSL's for big ones; the
same digests either way."""

import hashlib
import random

from cli.store.blobs import SMALL_BLOB, sha256_digest


def test_sha256_digest_small_and_large_agree_with_hashlib():
    for size in (0, 1, SMALL_BLOB - 1, SMALL_BLOB, SMALL_BLOB * 3):
        data = random.Random(size).randbytes(size)
        assert sha256_digest(data) == "sha256:" + hashlib.sha256(data).hexdigest()
