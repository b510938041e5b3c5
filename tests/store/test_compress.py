"""The layer compressors: what they write must decompress with any gzip reader, and the
same input must give the same bytes however it is fed and however many threads deflate."""

import gzip
import random
import zlib

import pytest

from cli.store.compress import BLOCK, ParallelGzip, compressor


def _gzip(pieces, workers=None) -> bytes:
    out = bytearray()
    packer = ParallelGzip(out.extend, workers=workers)
    for piece in pieces:
        packer.write(piece)
    packer.close()
    return bytes(out)


def _sample() -> bytes:
    rng = random.Random(8)
    text = b"".join(b"line %d of a rather repetitive text file\n" % i for i in range(60000))
    return text + rng.randbytes(BLOCK + 12345) + text[:BLOCK // 3]


@pytest.mark.parametrize("size", [0, 1, BLOCK - 1, BLOCK, BLOCK + 1])
def test_gzip_round_trip_at_block_edges(size):
    data = _sample()[:size]
    blob = _gzip([data])
    assert gzip.decompress(blob) == data
    assert zlib.decompress(blob, 31) == data   # one gzip member, as any reader expects


def test_gzip_is_deterministic_whatever_the_feeding_and_threads():
    data = _sample()
    one = _gzip([data], workers=1)
    pieces = [data[i:i + 7777] for i in range(0, len(data), 7777)]
    assert _gzip(pieces, workers=2) == one
    assert _gzip([data[:5], data[5:BLOCK * 2 + 3], data[BLOCK * 2 + 3:]], workers=3) == one
    assert gzip.decompress(one) == data
    assert len(one) < len(data) * 0.7   # the text compresses


def test_gzip_header_has_no_name_and_no_mtime():
    blob = _gzip([b"x" * 100])
    assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"


def test_compressor_by_name():
    for name in ("gzip", "zstd", "none"):
        out = bytearray()
        packer = compressor(name, out.extend)
        packer.write(b"hello " * 1000)
        packer.close()
        assert out

