"""The readahead of our FUSE mount: the kernel's default makes big reads small.

A FUSE mount has its own backing device info, with the kernel's default readahead of
128 KiB: a big sequential read then arrives in READs of 256 KiB. Our INIT reply allows
requests of up to 1 MiB, so at 1 MiB each READ carries a full request: a quarter of
the round trips through our one serving loop (``cat`` of 512 MB: 2,048 READs → 512).
The kernel's own overlay reads ahead as far as the disk below (8 MiB here).

It can only be raised after the INIT reply, which caps it at what we answered (the
kernel's own offer), and nothing of ours may stat the mount to find it: the serving
loop raises it on the first open, from the device number in ``/proc/self/mountinfo``.
"""

from __future__ import annotations

import logging

from overlayfs.mountinfo import device_of

log = logging.getLogger(__name__)

#: KiB; never lowered if someone set more.
READ_AHEAD_KB = 1024


def raise_for(mountpoint: str, kib: int = READ_AHEAD_KB) -> None:
    """Raise the readahead of the file system mounted on MOUNTPOINT to KIB. Best
    effort: writing it needs root; without it, reads are the same in smaller pieces."""
    device = device_of(mountpoint)
    if device is None:
        log.debug("readahead: %s not found in /proc/self/mountinfo", mountpoint)
        return
    path = "/sys/class/bdi/%d:%d/read_ahead_kb" % device
    try:
        with open(path, "r+") as knob:
            if int(knob.read()) < kib:
                knob.seek(0)
                knob.write(f"{kib}\n")
    except (OSError, ValueError) as exc:
        log.debug("readahead of %s left as it is: %s", path, exc)
