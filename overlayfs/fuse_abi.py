"""The FUSE kernel protocol, 7.40 (include/uapi/linux/fuse.h): opcodes, flags and the
layouts of the messages read from and written to /dev/fuse, as ``struct.Struct``s.

Native byte order and no padding between fields (``=``): the kernel's structs are laid
out so that none is needed.
"""

from __future__ import annotations

import os
import stat
import struct

MAJOR = 7
#: The minor version we implement: 40 brought passthrough (FOPEN_PASSTHROUGH, backing
#: ids, init_out.max_stack_depth).
MINOR = 40
ROOT_ID = 1

# -- opcodes ------------------------------------------------------------------------------
LOOKUP, FORGET, GETATTR, SETATTR, READLINK, SYMLINK = 1, 2, 3, 4, 5, 6
MKNOD, MKDIR, UNLINK, RMDIR, RENAME, LINK, OPEN, READ, WRITE = 8, 9, 10, 11, 12, 13, 14, 15, 16
STATFS, RELEASE, FSYNC, SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR = 17, 18, 20, 21, 22, 23, 24
FLUSH, INIT, OPENDIR, READDIR, RELEASEDIR, FSYNCDIR = 25, 26, 27, 28, 29, 30
ACCESS, CREATE, INTERRUPT, DESTROY = 34, 35, 36, 38
BATCH_FORGET, READDIRPLUS, RENAME2 = 42, 44, 45

#: Handler names by opcode: an operations object answers the opcodes it has a method
#: ``op_<name>`` for; the others get ENOSYS (which the kernel remembers for most).
NAMES = {
    LOOKUP: "lookup", FORGET: "forget", GETATTR: "getattr", SETATTR: "setattr",
    READLINK: "readlink", SYMLINK: "symlink", MKNOD: "mknod", MKDIR: "mkdir",
    UNLINK: "unlink", RMDIR: "rmdir", RENAME: "rename", LINK: "link", OPEN: "open",
    READ: "read", WRITE: "write", STATFS: "statfs", RELEASE: "release", FSYNC: "fsync",
    SETXATTR: "setxattr", GETXATTR: "getxattr", LISTXATTR: "listxattr",
    REMOVEXATTR: "removexattr", FLUSH: "flush", OPENDIR: "opendir", READDIR: "readdir",
    RELEASEDIR: "releasedir", FSYNCDIR: "fsyncdir", ACCESS: "access", CREATE: "create",
    BATCH_FORGET: "batch_forget", READDIRPLUS: "readdirplus", RENAME2: "rename2",
}
#: Requests the kernel expects no answer to.
NO_REPLY = frozenset({FORGET, BATCH_FORGET, INTERRUPT})

# -- INIT flags -----------------------------------------------------------------------------
ASYNC_READ = 1 << 0
ATOMIC_O_TRUNC = 1 << 3
EXPORT_SUPPORT = 1 << 4
BIG_WRITES = 1 << 5
AUTO_INVAL_DATA = 1 << 12
DO_READDIRPLUS = 1 << 13
ASYNC_DIO = 1 << 15
WRITEBACK_CACHE = 1 << 16
PARALLEL_DIROPS = 1 << 18
HANDLE_KILLPRIV = 1 << 19
POSIX_ACL = 1 << 20
MAX_PAGES = 1 << 22
INIT_EXT = 1 << 30
PASSTHROUGH = 1 << 37

# -- OPEN reply flags -----------------------------------------------------------------------
FOPEN_DIRECT_IO = 1 << 0
FOPEN_KEEP_CACHE = 1 << 1
FOPEN_PASSTHROUGH = 1 << 7

# -- SETATTR valid bits ---------------------------------------------------------------------
FATTR_MODE, FATTR_UID, FATTR_GID, FATTR_SIZE = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FATTR_ATIME, FATTR_MTIME, FATTR_FH = 1 << 4, 1 << 5, 1 << 6
FATTR_ATIME_NOW, FATTR_MTIME_NOW = 1 << 7, 1 << 8

FSYNC_FDATASYNC = 1 << 0

# -- /dev/fuse ioctls: _IOW(229, nr, size) ---------------------------------------------------
DEV_IOC_BACKING_OPEN = (1 << 30) | (16 << 16) | (229 << 8) | 1
DEV_IOC_BACKING_CLOSE = (1 << 30) | (4 << 16) | (229 << 8) | 2
BACKING_MAP = struct.Struct("=iIQ")          # fd, flags, padding
BACKING_ID = struct.Struct("=I")

# -- messages -------------------------------------------------------------------------------
IN_HEADER = struct.Struct("=IIQQIIIHH")      # len opcode unique nodeid uid gid pid extlen -
OUT_HEADER = struct.Struct("=IiQ")           # len error unique
INIT_IN = struct.Struct("=IIIII")            # major minor max_readahead flags flags2
#: major minor max_readahead flags max_background congestion_threshold max_write
#: time_gran max_pages map_alignment flags2 max_stack_depth unused[6]
INIT_OUT = struct.Struct("=IIIIHHIIHHII24x")
_ATTR = "QQQqqqIIIIIIIIII"                   # struct fuse_attr
ATTR_OUT = struct.Struct("=QII" + _ATTR)     # attr_valid(+nsec) dummy attr
ENTRY_OUT = struct.Struct("=QQQQII" + _ATTR)  # nodeid generation entry/attr_valid(+nsec) attr
DIRENT = struct.Struct("=QQII")              # ino off namelen type, then the name
DIRENT_PLUS = struct.Struct("=QQQQII" + _ATTR + "QQII")   # entry_out, then a dirent
OPEN_IN = struct.Struct("=II")               # flags open_flags
OPEN_OUT = struct.Struct("=QIi")             # fh open_flags backing_id
CREATE_IN = struct.Struct("=IIII")           # flags mode umask open_flags
READ_IN = struct.Struct("=QQII")             # fh offset size read_flags (then more)
WRITE_IN = struct.Struct("=QQIIQII")         # fh offset size write_flags lock_owner flags -
WRITE_OUT = struct.Struct("=II")
RELEASE_IN = struct.Struct("=QII")           # fh flags release_flags (then lock_owner)
FSYNC_IN = struct.Struct("=QII")             # fh fsync_flags padding
GETATTR_IN = struct.Struct("=IIQ")           # getattr_flags dummy fh
#: valid padding fh size lock_owner atime mtime ctime atimensec mtimensec ctimensec
#: mode unused uid gid unused
SETATTR_IN = struct.Struct("=IIQQQqqqIIIIIIII")
MKNOD_IN = struct.Struct("=IIII")            # mode rdev umask padding
MKDIR_IN = struct.Struct("=II")              # mode umask
RENAME_IN = struct.Struct("=Q")              # newdir
RENAME2_IN = struct.Struct("=QII")           # newdir flags padding
LINK_IN = struct.Struct("=Q")                # oldnodeid
FORGET_IN = struct.Struct("=Q")              # nlookup
BATCH_FORGET_IN = struct.Struct("=II")       # count dummy
FORGET_ONE = struct.Struct("=QQ")            # nodeid nlookup
XATTR_SIZE = struct.Struct("=II")            # getxattr_in/out, setxattr_in (size flags)
STATFS_OUT = struct.Struct("=QQQQQIII28x")   # blocks bfree bavail files ffree bsize namelen frsize
NOTIFY_INVAL_INODE = struct.Struct("=Qqq")   # ino offset (-1: attributes only) length
NOTIFY_INVAL_INODE_CODE = 2                  # in out_header.error of a notification

WRITE_IN_SIZE = WRITE_IN.size


def split_names(body, count: int) -> list[bytes]:
    """The COUNT NUL-terminated strings that make up BODY (a request's arguments)."""
    return bytes(body).split(b"\0", count)[:count]


def name_of(body) -> bytes:
    """The one NUL-terminated name that is a request's whole argument."""
    return bytes(body[:-1])


def timeout_parts(seconds: float) -> tuple[int, int]:
    whole = int(seconds)
    return whole, int((seconds - whole) * 1e9)


def attr_fields(ino: int, st: os.stat_result, uid: int, gid: int) -> tuple:
    """struct fuse_attr for ST (with UID and GID as the mount shows them)."""
    a_sec, a_nsec = divmod(st.st_atime_ns, 1_000_000_000)
    m_sec, m_nsec = divmod(st.st_mtime_ns, 1_000_000_000)
    c_sec, c_nsec = divmod(st.st_ctime_ns, 1_000_000_000)
    return (ino, st.st_size, st.st_blocks, a_sec, m_sec, c_sec, a_nsec, m_nsec, c_nsec,
            st.st_mode, st.st_nlink, uid, gid, st.st_rdev & 0xFFFFFFFF, st.st_blksize, 0)


def dirent_type(mode: int) -> int:
    return stat.S_IFMT(mode) >> 12


def padded(name: bytes) -> bytes:
    """NAME followed by the NULs that align the next dirent to 8 bytes."""
    return name + b"\0" * (-len(name) % 8)
