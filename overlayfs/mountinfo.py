"""What is mounted where, from /proc/self/mountinfo: one reader for every caller.

It never touches a mount itself (no ``stat`` of a mountpoint), so it neither hangs on a
stuck FUSE server nor asks ours a question before it serves.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

_ESCAPE = re.compile(rb"\\([0-7]{3})")


def _unescaped(field: bytes) -> bytes:
    """A mountinfo path field as the path it is (octal escapes for blanks, backslash)."""
    return _ESCAPE.sub(lambda m: bytes((int(m.group(1), 8),)), field)


def _mounts() -> Iterator[tuple[bytes, bytes, bytes]]:
    """(major:minor, mountpoint, file system type) of every mount, in mount order."""
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return
    for line in lines:
        fields = line.split(b" ")
        _, separator, rest = line.partition(b" - ")
        if len(fields) > 4 and separator:
            yield fields[2], _unescaped(fields[4]), rest.split(b" ", 1)[0]


def device_of(mountpoint: str) -> tuple[int, int] | None:
    """(major, minor) of what is mounted on MOUNTPOINT (the topmost mount there)."""
    target = os.fsencode(mountpoint)
    found = None
    for device, where, _ in _mounts():
        if where == target:
            found = device  # later lines are mounted over earlier ones
    if found is None:
        return None
    major, _, minor = found.partition(b":")
    try:
        return int(major), int(minor)
    except ValueError:
        return None


def is_mounted(path: str) -> bool:
    target = os.fsencode(os.path.abspath(path))
    return any(where == target for _, where, _ in _mounts())


def fs_type_of(path: str) -> str:
    """The type of the file system PATH is on ("" if mountinfo does not say)."""
    dev = os.stat(path).st_dev
    wanted = f"{os.major(dev)}:{os.minor(dev)}".encode()
    for device, _, fs_type in _mounts():
        if device == wanted:
            return os.fsdecode(fs_type)
    return ""
