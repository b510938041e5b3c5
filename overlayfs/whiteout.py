"""Every whiteout and opaque-directory convention, in both directions.

Three families meet here:

* the kernel overlay form, which is what we *write* into upper dirs and unpacked
  layer dirs: a character device 0:0 marks a deleted entry; xattr
  ``trusted.overlay.opaque=y`` (or ``user.overlay.opaque=y`` where trusted xattrs are
  not allowed) marks a directory that hides everything below it;
* the fuse-overlayfs / OCI-on-disk form, which Podman layers may carry and which we
  only *read*: a ``.wh.NAME`` file marks NAME deleted, a ``.wh..wh..opq`` entry or
  ``user.fuseoverlayfs.opaque=y`` marks the directory opaque;
* the OCI layer-tar form (``.wh.NAME`` and ``.wh..wh..opq`` members), converted by
  :mod:`overlayfs.layer_tar` using the names defined here.

All functions take a directory file descriptor plus a name (or a path relative to it,
walked down when it is too long for one call), so callers never build long absolute
paths.
"""

from __future__ import annotations

import errno
import os
import stat

from overlayfs.longpath import near

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER_NAME = ".wh..wh..opq"
#: Names starting with this are the OCI spec's reserved namespace (".wh..wh.*").
RESERVED_PREFIX = ".wh..wh."

TRUSTED_OPAQUE = "trusted.overlay.opaque"
USER_OPAQUE = "user.overlay.opaque"
FUSE_OVERLAYFS_OPAQUE = "user.fuseoverlayfs.opaque"
OPAQUE_XATTRS = (TRUSTED_OPAQUE, USER_OPAQUE, FUSE_OVERLAYFS_OPAQUE)

#: Xattrs that are overlay bookkeeping: never shown in a merged view, never exported.
#: ("user.layerbox." is ours: the index's link counts, on files the upper shares.)
PRIVATE_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.", "user.fuseoverlayfs.",
                          "user.layerbox.")

REDIRECT_XATTRS = ("trusted.overlay.redirect", "user.overlay.redirect")

_DIR_OPEN_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def is_whiteout_stat(st: os.stat_result) -> bool:
    """A character device with device number 0:0 is the overlay whiteout."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_private_name(name: str) -> bool:
    """Names in the ``.wh.`` namespace are bookkeeping, never user-visible entries."""
    return name.startswith(WHITEOUT_PREFIX)


def whiteout_target(name: str) -> str | None:
    """For ``.wh.NAME`` return NAME; for the opaque marker or any other name, None."""
    if not name.startswith(WHITEOUT_PREFIX) or name.startswith(RESERVED_PREFIX):
        return None
    target = name[len(WHITEOUT_PREFIX):]
    return target or None


def whiteout_file_name(name: str) -> str:
    """The OCI / fuse-overlayfs file name that deletes NAME."""
    return WHITEOUT_PREFIX + name


def is_private_xattr(name: str) -> bool:
    return name.startswith(PRIVATE_XATTR_PREFIXES)


def _get_xattr(fd: int, name: str) -> bytes | None:
    try:
        return os.getxattr(fd, name)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM, errno.EACCES):
            return None
        raise


def is_opaque_fd(dir_fd: int) -> bool:
    """True if the open directory is opaque in any of the conventions we read."""
    for attr in OPAQUE_XATTRS:
        if _get_xattr(dir_fd, attr) == b"y":
            return True
    try:
        os.stat(OPAQUE_MARKER_NAME, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def is_opaque_at(parent_fd: int, name: str) -> bool:
    """True if directory NAME inside PARENT_FD is opaque."""
    with near(parent_fd, name) as (parent_fd, name):
        fd = os.open(name, _DIR_OPEN_FLAGS, dir_fd=parent_fd)
    try:
        return is_opaque_fd(fd)
    finally:
        os.close(fd)


def redirect_of_fd(dir_fd: int) -> str | None:
    """The kernel overlay's ``redirect`` target of a renamed directory, if any.

    An absolute value ("/a/b") is relative to the layer root; a bare name is
    relative to the directory's own parent, as in the kernel's redirect_dir feature.
    """
    for attr in REDIRECT_XATTRS:
        value = _get_xattr(dir_fd, attr)
        if value:
            return os.fsdecode(value)
    return None


def redirect_at(parent_fd: int, rel: str) -> str | None:
    """The redirect of directory REL in PARENT_FD (one listxattr when there is none)."""
    with near(parent_fd, rel) as (parent_fd, rel):
        path = f"/proc/self/fd/{parent_fd}/{rel}"
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in (errno.ENOTSUP, errno.EPERM, errno.EACCES):
                return None
            raise
        for attr in REDIRECT_XATTRS:
            if attr in names:
                try:
                    value = os.getxattr(path, attr, follow_symlinks=False)
                except OSError:
                    continue
                if value:
                    return os.fsdecode(value)
    return None


def is_whiteout_at(dir_fd: int, name: str) -> bool:
    """True if NAME is deleted in this layer directory, in either whiteout form."""
    with near(dir_fd, name) as (dir_fd, name):
        return _is_whiteout_at(dir_fd, name)


def _is_whiteout_at(dir_fd: int, name: str) -> bool:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    if st is not None and is_whiteout_stat(st):
        return True
    try:
        os.stat(whiteout_file_name(name), dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, OSError):
        return False
    return True


class WhiteoutWriter:
    """Writes whiteouts and opaque markers in the overlay form, degrading gracefully.

    Creating a 0:0 device needs CAP_MKNOD and trusted xattrs need CAP_SYS_ADMIN; when
    either is refused the writer falls back (``.wh.NAME`` files, ``user.overlay.opaque``)
    once and remembers it, so it does not retry a refused call on every delete.
    """

    __slots__ = ("_mknod_works", "_trusted_works")

    def __init__(self) -> None:
        self._mknod_works = True
        self._trusted_works = True

    def make_whiteout(self, dir_fd: int, name: str) -> None:
        """Mark NAME deleted inside DIR_FD. NAME must not exist in this directory."""
        with near(dir_fd, name) as (dir_fd, name):
            self._make_whiteout(dir_fd, name)

    def _make_whiteout(self, dir_fd: int, name: str) -> None:
        if self._mknod_works:
            try:
                os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dir_fd)
                return
            except PermissionError:
                self._mknod_works = False
        fd = os.open(whiteout_file_name(name),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o000,
                     dir_fd=dir_fd)
        os.close(fd)

    def mark_opaque_fd(self, dir_fd: int) -> None:
        self._set_overlay_xattr(dir_fd, TRUSTED_OPAQUE, USER_OPAQUE, b"y")

    def set_redirect_fd(self, dir_fd: int, target: str) -> None:
        """Record that this directory shows the lower directory at TARGET (kernel form)."""
        self._set_overlay_xattr(dir_fd, *REDIRECT_XATTRS, os.fsencode(target))

    def _set_overlay_xattr(self, dir_fd: int, trusted: str, user: str, value: bytes) -> None:
        """The trusted.overlay.* form while the upper takes it, else user.overlay.*."""
        if self._trusted_works:
            try:
                os.setxattr(dir_fd, trusted, value)
                return
            except PermissionError:
                self._trusted_works = False
            except OSError as exc:
                if exc.errno != errno.ENOTSUP:
                    raise
                self._trusted_works = False
        os.setxattr(dir_fd, user, value)

    def set_redirect_at(self, parent_fd: int, name: str, target: str) -> None:
        with near(parent_fd, name) as (parent_fd, name):
            fd = os.open(name, _DIR_OPEN_FLAGS, dir_fd=parent_fd)
        try:
            for attr in REDIRECT_XATTRS:  # a stale one of the other family would win
                try:
                    os.removexattr(fd, attr)
                except OSError:
                    pass
            self.set_redirect_fd(fd, target)
        finally:
            os.close(fd)

    def mark_opaque_at(self, parent_fd: int, name: str) -> None:
        with near(parent_fd, name) as (parent_fd, name):
            fd = os.open(name, _DIR_OPEN_FLAGS, dir_fd=parent_fd)
        try:
            self.mark_opaque_fd(fd)
        finally:
            os.close(fd)


def clear_opaque_fd(dir_fd: int) -> None:
    """Remove every opaque xattr we understand (used when a layer is re-applied)."""
    for attr in OPAQUE_XATTRS:
        try:
            os.removexattr(dir_fd, attr)
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                raise
