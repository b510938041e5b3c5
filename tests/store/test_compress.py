import gzip
import io
import random

import pytest

from cli.store.compress import BLOCK, ParallelGzip, compressor


def _gzip(data: bytes, workers: int, piece: int) -> bytes:
    out = io.BytesIO()
    g = ParallelGzip(out.write, workers)
    for i in range(0, len(data), piece):
        g.write(data[i:i + piece])
    g.close()
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, BLOCK - 1, BLOCK, 3 * BLOCK + 17])
def test_parallel_gzip_is_valid_and_deterministic(size):
    rng = random.Random(size)
    data = bytes(rng.choice(b"abcdefgh \n") for _ in range(min(size, 4096))) * (size // 4096 + 1)
    data = data[:size]
    a = _gzip(data, 1, 65536)
    b = _gzip(data, 3, 1000)  # other thread count, other read sizes: same bytes
    assert a == b
    assert gzip.decompress(a) == data
    assert a[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"  # mtime 0, no name


def test_zstd_and_none():
    import zstandard
    out = io.BytesIO()
    z = compressor("zstd", out.write)
    z.write(b"hello" * 1000)
    z.close()
    assert zstandard.ZstdDecompressor().decompressobj().decompress(out.getvalue()) == \
        b"hello" * 1000
    with pytest.raises(Exception, match="unknown compression"):
        compressor("lz4", out.write)
