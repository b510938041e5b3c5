"""The attach socket's wire format, shared by the monitor and its clients.

The client sends one JSON line first, ``{"stdin": bool, "stdout": bool, "stderr": bool,
"rows": R, "cols": C}``; then both directions carry frames of
``type (1 byte) + length (4 bytes, big endian) + payload``.
"""

from __future__ import annotations

import struct

# Client → monitor:
FRAME_STDIN, FRAME_STDIN_EOF, FRAME_RESIZE = 0, 4, 5      # resize payload: b"ROWS COLS"
# Monitor → client:
FRAME_STDOUT, FRAME_STDERR, FRAME_EXIT = 1, 2, 3          # exit payload: {"exit_code", "error"}

HEADER = struct.Struct(">BI")


def frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


class FrameReader:
    """Splits a byte stream into (type, payload) frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buffer)
            if len(self._buffer) < HEADER.size + length:
                break
            frames.append((kind, bytes(self._buffer[HEADER.size:HEADER.size + length])))
            del self._buffer[:HEADER.size + length]
        return frames
