"""Copying one entry from a lower layer into the upper layer, preserving what the
kernel overlay preserves: content, type, mode, owner, atime/mtime and xattrs.

Every copy is built in the work directory under a unique name and renamed into
place, so a crash never leaves a half-copied file visible in the upper layer.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat

from overlayfs.longpath import near
from overlayfs.whiteout import is_private_xattr

_COPY_CHUNK = 1 << 24
_counter = itertools.count()


def temp_name() -> str:
    return f"#layerbox-{os.getpid()}-{next(_counter)}"


def proc_path(dir_fd: int, name: str) -> str:
    """A short path to NAME in DIR_FD, for calls that have no ``*at`` form (xattrs)."""
    return f"/proc/self/fd/{dir_fd}/{name}"


def list_user_xattrs(path: str) -> list[str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return []
        raise
    return [n for n in names if not is_private_xattr(n)]


def copy_xattrs(src_path: str, dst_path: str) -> None:
    for name in list_user_xattrs(src_path):
        try:
            value = os.getxattr(src_path, name, follow_symlinks=False)
            os.setxattr(dst_path, name, value, follow_symlinks=False)
        except OSError as exc:
            # security.* / trusted.* may be refused on the target file system; the
            # kernel overlay skips those too rather than failing the copy-up.
            if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.ENODATA):
                raise


def copy_data(src_fd: int, dst_fd: int, size: int) -> None:
    offset = 0
    try:
        while offset < size:
            n = os.copy_file_range(src_fd, dst_fd, min(_COPY_CHUNK, size - offset))
            if n == 0:
                break
            offset += n
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    os.lseek(src_fd, offset, os.SEEK_SET)
    os.lseek(dst_fd, offset, os.SEEK_SET)
    while True:
        chunk = os.read(src_fd, 1 << 20)
        if not chunk:
            break
        os.write(dst_fd, chunk)


def copy_entry(src_dir_fd: int, name: str, st: os.stat_result, work_fd: int,
               *, with_data: bool = True) -> str:
    """Copy NAME (lstat'ed as ST) from SRC_DIR_FD into a new temp entry of the work dir.

    Returns the temp name; the caller renames it into place. Directories are created
    empty (their lower children stay visible through the merge).
    """
    with near(src_dir_fd, name) as (src_dir_fd, name):
        return _copy_entry(src_dir_fd, name, st, work_fd, with_data)


def _copy_entry(src_dir_fd: int, name: str, st: os.stat_result, work_fd: int,
                with_data: bool) -> str:
    tmp = temp_name()
    mode = st.st_mode
    kind = stat.S_IFMT(mode)
    try:
        if kind == stat.S_IFREG:
            dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                          0o600, dir_fd=work_fd)
            try:
                if with_data and st.st_size:
                    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                  dir_fd=src_dir_fd)
                    try:
                        copy_data(src, dst, st.st_size)
                    finally:
                        os.close(src)
                os.fchown(dst, st.st_uid, st.st_gid)
                os.fchmod(dst, stat.S_IMODE(mode))
            finally:
                os.close(dst)
        elif kind == stat.S_IFDIR:
            os.mkdir(tmp, 0o700, dir_fd=work_fd)
            os.chown(tmp, st.st_uid, st.st_gid, dir_fd=work_fd, follow_symlinks=False)
            os.chmod(tmp, stat.S_IMODE(mode), dir_fd=work_fd)
        elif kind == stat.S_IFLNK:
            target = os.readlink(name, dir_fd=src_dir_fd)
            os.symlink(target, tmp, dir_fd=work_fd)
            os.chown(tmp, st.st_uid, st.st_gid, dir_fd=work_fd, follow_symlinks=False)
        else:  # FIFOs, sockets and device nodes stay what they are
            os.mknod(tmp, mode, st.st_rdev, dir_fd=work_fd)
            os.chown(tmp, st.st_uid, st.st_gid, dir_fd=work_fd, follow_symlinks=False)
            os.chmod(tmp, stat.S_IMODE(mode), dir_fd=work_fd)
        copy_xattrs(proc_path(src_dir_fd, name), proc_path(work_fd, tmp))
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=work_fd,
                 follow_symlinks=False)
    except BaseException:
        remove_entry(work_fd, tmp)
        raise
    return tmp


def remove_entry(dir_fd: int, name: str) -> None:
    """Remove NAME and everything below it; never follows symlinks."""
    with near(dir_fd, name) as (dir_fd, name):
        _remove_entry(dir_fd, name)


def _remove_entry(dir_fd: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                 dir_fd=dir_fd)
    try:
        for child in os.listdir(fd):
            _remove_entry(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)
