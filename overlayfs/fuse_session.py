"""A FUSE session on /dev/fuse, spoken directly: mount, the INIT handshake, the request
loop, replies, passthrough backing files, unmount.

Why not libfuse (through pyfuse3), which served before: Debian's libfuse 3.14 cannot
negotiate FUSE passthrough (kernel 6.9+), where the kernel reads and writes an open
file's backing file itself (a write still asks us for ``security.capability``, as every
FUSE write does); and a Python request loop over
the raw protocol costs no more per request than pyfuse3's did (one ``readv`` into a
reused buffer, one ``struct`` unpack, one ``writev``), with no coroutine, no
per-request objects and no library to load at start-up.

The loop is single-threaded: our handlers never block on anything but the local disk,
and with passthrough the bulk data does not come through here at all.

An operations object answers opcode N through its method ``op_<abi.NAMES[N]>(nodeid,
body, header)``: BODY is a memoryview of the request's arguments (valid only during
the call), HEADER the unpacked ``fuse_in_header``. A handler returns the reply's
payload (bytes, or a list of bytes-like pieces) or raises OSError for an error reply.
Any other exception goes to ``operations.failed(opcode, exc)``, which returns the errno
to answer with; without that method it ends the loop (the crash path of the mount
program). Before the first request it sees, ``operations.init(session)`` is called.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import subprocess

from overlayfs import fuse_abi as abi

#: The largest WRITE (and READ) the kernel is allowed to send: 1 MiB (256 pages of 4 KiB,
#: the kernel's maximum; fewer, larger pages elsewhere).
MAX_WRITE = 1 << 20
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
#: A request: header, WRITE arguments and data, rounded up to a page.
BUFFER_SIZE = MAX_WRITE + 4096
#: /proc/PID/uid_map of the user namespace every process starts in (the identity over
#: all ids); passthrough needs CAP_SYS_ADMIN there.
_INIT_USER_NS_MAP = [b"0", b"0", b"4294967295"]

_MS_FLAGS = {"ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8}
_MS_CLEARED_BY = {"rw": 1, "suid": 2, "dev": 4, "exec": 8}
#: Options that travel in the mount's data string, as libfuse passes them.
_KERNEL_DATA = ("default_permissions", "allow_other")
_KERNEL_DATA_VALUED = ("max_read=", "context=", "fscontext=", "defcontext=", "rootcontext=")
_MNT_DETACH = 2


class MountFailed(Exception):
    """The mount was refused; the message says why, on one line."""


class _NotPermitted(Exception):
    """We may not mount ourselves, but fusermount3 may do it for us."""


class Stopped(Exception):
    """Raised by :meth:`Session.terminate` into a loop that is waiting for a request."""


def _libc():
    import ctypes
    return ctypes, ctypes.CDLL(None, use_errno=True)


class Session:
    def __init__(self, operations, mountpoint: str, options: set[str]):
        self.operations = operations
        self.mountpoint = mountpoint
        self.fd: int | None = None
        #: The kernel reads and writes files opened with a backing id itself.
        self.passthrough = False
        self._options = set(options)
        self._fusermount = False
        self._stopping = False
        self._waiting = False
        self._handlers: dict[int, object] = {}
        self._failed = getattr(operations, "failed", None)
        self.log = logging.getLogger(__name__)

    # -- mounting -------------------------------------------------------------------------
    def mount(self) -> None:
        """Mount on the mountpoint (MountFailed says why not); /dev/fuse is then open."""
        fsname, subtype, flags, data = self._mount_parameters()
        try:
            st = os.stat(self.mountpoint)
        except OSError as exc:
            raise MountFailed(f"cannot mount on '{self.mountpoint}': {exc.strerror}") from None
        try:
            self.fd = self._mount_ourselves(fsname, subtype, flags, data, st.st_mode)
        except _NotPermitted:
            self.fd = self._mount_with_fusermount(fsname, subtype)
            self._fusermount = True

    def _mount_ourselves(self, fsname: str, subtype: str, flags: int, data: list[str],
                         root_mode: int) -> int:
        """Open /dev/fuse and mount(2) it; the fd. _NotPermitted where fusermount3 may
        still do it (we are not root), MountFailed for any other refusal."""
        unprivileged = os.geteuid() != 0
        try:
            fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM) and unprivileged:
                raise _NotPermitted() from None
            raise MountFailed(f"cannot mount on '{self.mountpoint}': /dev/fuse: "
                              f"{exc.strerror}") from None
        data = [f"fd={fd}", f"rootmode={stat.S_IFMT(root_mode):o}",
                f"user_id={os.getuid()}", f"group_id={os.getgid()}", *data]
        ctypes, libc = _libc()
        fstype = f"fuse.{subtype}" if subtype else "fuse"
        if libc.mount(os.fsencode(fsname), os.fsencode(self.mountpoint), fstype.encode(),
                      ctypes.c_ulong(flags), os.fsencode(",".join(data))) == 0:
            return fd
        error = ctypes.get_errno()
        os.close(fd)
        if error == errno.EPERM and unprivileged:
            raise _NotPermitted()
        raise MountFailed(f"cannot mount on '{self.mountpoint}': {os.strerror(error)}")

    def _mount_parameters(self) -> tuple[str, str, int, list[str]]:
        fsname, subtype, data = "layerbox-overlayfs", "", []
        restricted = cleared = 0
        for option in sorted(self._options):
            if option.startswith("fsname="):
                fsname = option[len("fsname="):]
            elif option.startswith("subtype="):
                subtype = option[len("subtype="):]
            elif option in _MS_FLAGS:
                restricted |= _MS_FLAGS[option]
            elif option in _MS_CLEARED_BY:
                cleared |= _MS_CLEARED_BY[option]
            elif option in _KERNEL_DATA or option.startswith(_KERNEL_DATA_VALUED):
                data.append(option)
            else:
                raise MountFailed(f"cannot mount on '{self.mountpoint}': "
                                  f"unknown option '{option}'")
        # libfuse's defaults (nosuid, nodev) unless cleared; an explicit restriction
        # beats its permissive twin (nosuid beats suid).
        default = _MS_FLAGS["nosuid"] | _MS_FLAGS["nodev"]
        return fsname, subtype, (default & ~cleared) | restricted, data

    def _mount_with_fusermount(self, fsname: str, subtype: str) -> int:
        """Not allowed to mount(2): fusermount3 (setuid) mounts and hands us the fd."""
        import socket
        options = [f"fsname={_escape(fsname)}"] + ([f"subtype={subtype}"] if subtype else [])
        options += [o for o in sorted(self._options)
                    if not o.startswith(("fsname=", "subtype=")) and o not in ("suid", "dev")]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with ours, theirs:
            try:
                done = subprocess.run(
                    ["fusermount3", "-o", ",".join(options), "--", self.mountpoint],
                    pass_fds=(theirs.fileno(),), capture_output=True, text=True,
                    env={**os.environ, "_FUSE_COMMFD": str(theirs.fileno())})
            except FileNotFoundError:
                raise MountFailed(f"cannot mount on '{self.mountpoint}': not permitted, "
                                  "and fusermount3 is not installed") from None
            if done.returncode != 0:
                reason = " ".join(done.stderr.split()).removeprefix("fusermount3: ")
                raise MountFailed(f"cannot mount on '{self.mountpoint}': {reason}")
            theirs.close()
            _, fds, _, _ = socket.recv_fds(ours, 1, 1)
        if not fds:
            raise MountFailed(f"cannot mount on '{self.mountpoint}': fusermount3 sent no fd")
        os.set_inheritable(fds[0], False)
        return fds[0]

    def close(self, unmount: bool) -> None:
        """Close /dev/fuse (which ends the connection); with UNMOUNT, take the mount away
        too (lazily, as libfuse does: a process still inside does not keep it)."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        if unmount:
            # POLLERR: the connection is gone, so is our mount; whatever is mounted on
            # the path now is someone else's (libfuse's check too).
            import select
            poller = select.poll()
            poller.register(fd, 0)
            unmount = not any(events & select.POLLERR for _, events in poller.poll(0))
        os.close(fd)
        if not unmount:
            return
        if self._fusermount:
            subprocess.run(["fusermount3", "-u", "-q", "-z", "--", self.mountpoint],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return
        ctypes, libc = _libc()
        if libc.umount2(os.fsencode(self.mountpoint), _MNT_DETACH) != 0:
            self.log.warning("unmounting %s: %s", self.mountpoint,
                             os.strerror(ctypes.get_errno()))

    # -- serving --------------------------------------------------------------------------
    def terminate(self) -> None:
        """End the loop (from a signal handler): at once if it waits for a request, else
        once the request in hand is answered."""
        self._stopping = True
        if self._waiting:
            raise Stopped()

    def serve(self) -> None:
        """Answer requests until the filesystem is unmounted or :meth:`terminate` is called."""
        fd = self.fd
        buffer = bytearray(BUFFER_SIZE)
        view = memoryview(buffer)
        unpack_header = abi.IN_HEADER.unpack_from
        pack_out = abi.OUT_HEADER.pack
        readv, writev = os.readv, os.writev
        handlers = self._handlers
        handlers[abi.INIT] = self._init
        try:
            while not self._stopping:
                # A signal while we wait raises Stopped out of readv (terminate()). If it
                # comes just after readv returned, that request goes unanswered here: it
                # ends with ENOTCONN when close() drops the connection a moment later,
                # like every request that arrives after the signal.
                self._waiting = True
                try:
                    length = readv(fd, (buffer,))
                except OSError as exc:
                    if exc.errno == errno.ENODEV:     # unmounted
                        return
                    if exc.errno in (errno.ENOENT, errno.EINTR, errno.EAGAIN):
                        continue                      # a request taken back
                    raise
                finally:
                    self._waiting = False
                header = unpack_header(buffer)
                opcode, unique = header[1], header[2]
                handler = handlers.get(opcode)
                if handler is None:
                    if opcode not in abi.NO_REPLY:
                        self._reply_error(unique, errno.ENOSYS)
                    continue
                try:
                    reply = handler(header[3], view[40:length], header)
                except OSError as exc:
                    self._reply_error(unique, exc.errno or errno.EIO)
                    continue
                except Exception as exc:
                    if self._failed is None:
                        raise
                    self._reply_error(unique, self._failed(opcode, exc))
                    continue
                if reply is None:
                    if opcode not in abi.NO_REPLY:   # a handler that forgot its answer
                        self.log.error("%s gave no reply", abi.NAMES.get(opcode, opcode))
                        self._reply_error(unique, errno.EIO)
                    continue
                try:
                    if type(reply) is list:
                        size = 16 + sum(len(piece) for piece in reply)
                        reply.insert(0, pack_out(size, 0, unique))
                        writev(fd, reply)
                    else:
                        writev(fd, (pack_out(16 + len(reply), 0, unique), reply))
                except OSError as exc:
                    self._reply_failed(opcode, exc)
                    # Refused before the kernel took it (EINVAL, too many pieces): the
                    # caller still waits. An ENOENT here passes silently again.
                    self._reply_error(unique, errno.EIO)
        except Stopped:
            return

    def _reply_error(self, unique: int, error: int) -> None:
        try:
            os.write(self.fd, abi.OUT_HEADER.pack(16, -error, unique))
        except OSError as exc:
            self._reply_failed(None, exc)

    def _reply_failed(self, opcode: int | None, exc: OSError) -> None:
        # ENOENT: the request was interrupted (or already answered) and nobody waits.
        if exc.errno != errno.ENOENT:
            self.log.error("the reply to %s was refused: %s",
                           abi.NAMES.get(opcode, opcode) if opcode else "a request", exc)

    # -- the handshake --------------------------------------------------------------------
    def _init(self, nodeid, body, header):
        major, minor, max_readahead, flags, flags2 = abi.INIT_IN.unpack_from(
            bytes(body).ljust(abi.INIT_IN.size, b"\0"))
        if major < abi.MAJOR:
            raise OSError(errno.EPROTO, "kernel FUSE protocol too old")
        if major > abi.MAJOR:    # the kernel then asks again, in our version
            return abi.INIT_OUT.pack(abi.MAJOR, abi.MINOR, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        offered = flags | (flags2 << 32 if flags & abi.INIT_EXT else 0)
        ops = self.operations
        # Not HANDLE_KILLPRIV (libfuse's default): the kernel then clears set-id bits on
        # write and chown itself, with a SETATTR; a passthrough write never reaches us.
        want = (abi.ASYNC_READ | abi.ATOMIC_O_TRUNC | abi.BIG_WRITES | abi.AUTO_INVAL_DATA
                | abi.DO_READDIRPLUS | abi.ASYNC_DIO | abi.PARALLEL_DIROPS
                | abi.MAX_PAGES | abi.INIT_EXT)
        if getattr(ops, "supports_dot_lookup", False):
            want |= abi.EXPORT_SUPPORT
        if getattr(ops, "enable_acl", False):
            want |= abi.POSIX_ACL
        if getattr(ops, "enable_passthrough", False) and offered & abi.PASSTHROUGH \
                and minor >= 40 and _may_pass_through():
            want |= abi.PASSTHROUGH     # excludes the writeback cache (the kernel's rule)
        elif getattr(ops, "enable_writeback_cache", False):
            want |= abi.WRITEBACK_CACHE
        granted = want & offered
        self.passthrough = bool(granted & abi.PASSTHROUGH)
        self._install_handlers()
        if hasattr(ops, "init"):
            ops.init(self)
        self.log.debug("FUSE %d.%d, flags %#x of %#x, passthrough %s", major, minor, granted,
                       offered, self.passthrough)
        return abi.INIT_OUT.pack(
            abi.MAJOR, min(minor, abi.MINOR), max_readahead, granted & 0xFFFFFFFF,
            0, 0, MAX_WRITE, 1, max(MAX_WRITE // PAGE_SIZE, 1), 0, granted >> 32,
            1 if self.passthrough else 0)

    def _install_handlers(self) -> None:
        for opcode, name in abi.NAMES.items():
            method = getattr(self.operations, "op_" + name, None)
            if method is not None:
                self._handlers[opcode] = method

    def invalidate_attributes(self, nodeid: int) -> None:
        """Have the kernel forget the attributes it caches for NODEID (a change it did
        not ask for: it would otherwise trust them for the attribute timeout)."""
        message = abi.NOTIFY_INVAL_INODE.pack(nodeid, -1, 0)
        try:
            os.write(self.fd, abi.OUT_HEADER.pack(16 + len(message), abi.NOTIFY_INVAL_INODE_CODE,
                                                  0) + message)
        except OSError as exc:
            if exc.errno != errno.ENOENT:   # ENOENT: the kernel has no such inode cached
                self.log.warning("invalidating inode %d: %s", nodeid, exc.strerror)

    # -- passthrough ----------------------------------------------------------------------
    def open_backing(self, fd: int) -> int | None:
        """Register FD's file as a backing file; its id, or None if the kernel refuses
        (then nothing more is tried: the refusal is about us, not about the file)."""
        try:
            return fcntl.ioctl(self.fd, abi.DEV_IOC_BACKING_OPEN,
                               bytearray(abi.BACKING_MAP.pack(fd, 0, 0)), True)
        except OSError as exc:
            # ELOOP: the upper file system is stacked itself (overlayfs below us); like
            # the others, true of every file.
            if exc.errno in (errno.EPERM, errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP,
                             errno.ELOOP):
                self.log.info("passthrough refused (%s): serving file data ourselves",
                              exc.strerror)
                self.passthrough = False
            else:
                self.log.debug("no backing file for fd %d: %s", fd, exc.strerror)
            return None

    def close_backing(self, backing_id: int) -> None:
        try:
            fcntl.ioctl(self.fd, abi.DEV_IOC_BACKING_CLOSE, abi.BACKING_ID.pack(backing_id))
        except OSError as exc:
            self.log.warning("closing backing id %d: %s", backing_id, exc.strerror)


def _may_pass_through() -> bool:
    """Registering a backing file takes CAP_SYS_ADMIN in the initial user namespace
    (root, not root in a rootless container): only then is passthrough asked for,
    since asking gives up the writeback cache."""
    return os.geteuid() == 0 and in_initial_user_namespace("self")


def in_initial_user_namespace(pid: int | str) -> bool:
    """Whether process PID ("self": this one) is in the user namespace every process
    starts in (its uid map is the identity over all ids)."""
    try:
        with open(f"/proc/{pid}/uid_map", "rb") as uid_map:
            return uid_map.read().split() == _INIT_USER_NS_MAP
    except OSError:
        return False


def has_capability(pid: int, capability: int) -> bool:
    """Whether process PID has CAPABILITY (a number, e.g. 4 for CAP_FSETID) in its
    effective set, in the initial user namespace; False if it cannot be told."""
    if pid <= 0 or not in_initial_user_namespace(pid):
        return False
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> capability & 1)
    except (OSError, ValueError):
        pass
    return False


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,")
