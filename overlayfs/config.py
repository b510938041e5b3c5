"""The mount's configuration: one immutable value, made by the command-line parser
(:mod:`overlayfs.options`) and read by the filesystem (:mod:`overlayfs.operations`)."""

from __future__ import annotations

from typing import NamedTuple

IdMapping = tuple[int, int, int]  # (from, to, length), as fuse-overlayfs' uidmapping=


class MountConfig(NamedTuple):
    """Immutable; a NamedTuple rather than a frozen dataclass because importing
    dataclasses (and inspect) is 5-9 ms of the mount program's start-up."""

    mountpoint: str
    #: Absolute, symlink-resolved lower directories, topmost first.
    lowers: tuple[str, ...]
    #: Writable upper directory; None makes a read-only mount (writes get EROFS).
    upper: str | None = None
    #: Staging directory on the upper's filesystem; required with ``upper``.
    work: str | None = None
    source: str = "layerbox-overlayfs"
    foreground: bool = False
    debug: bool = False
    read_only: bool = False
    squash_to_uid: int | None = None
    squash_to_gid: int | None = None
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()
    xattrs: bool = True
    acl: bool = True
    static_nlink: bool = False
    #: False for ``fsync=0`` and ``volatile``: fsync becomes a no-op.
    fsync: bool = True
    #: Entry/attr cache timeout in seconds (``timeout=``); None picks our default.
    timeout: float | None = None
    allow_other: bool = True
    #: Mount options handed to the kernel unchanged (``context=…``, ``nodev``, …).
    kernel_options: tuple[str, ...] = ()
    #: One line per ignored unknown option, printed as warnings.
    warnings: tuple[str, ...] = ()
