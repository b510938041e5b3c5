"""The client side of a container monitor's attach socket (``run``, ``start -a``,
``attach``, ``wait``, ``stop``).

A terminal attached to a tty container is put in raw mode, resizes are forwarded on
SIGWINCH, and Ctrl-P Ctrl-Q detaches (the container keeps running).
"""

from __future__ import annotations

import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import sys
import termios
import time
import tty as ttymod

from cli import logs
from cli.errors import UserError
from cli.attach_protocol import (FRAME_EXIT, FRAME_RESIZE, FRAME_STDERR, FRAME_STDIN, FRAME_STDIN_EOF,
                         FRAME_STDOUT, FrameReader, frame)

log = logs.get(__name__)

DETACH_KEYS = b"\x10\x11"      # Ctrl-P Ctrl-Q


class Detached(Exception):
    """The user pressed the detach keys."""


def connect(container) -> socket.socket | None:
    """A connection to the monitor, or None if it is not listening (not running)."""
    # The socket path may exceed sun_path's 108 bytes; go through a directory fd.
    try:
        dir_fd = os.open(container.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(f"/proc/self/fd/{dir_fd}/attach.sock")
    except OSError:
        sock.close()
        return None
    finally:
        os.close(dir_fd)
    return sock


def _terminal_size(fd: int) -> tuple[int, int] | None:
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return rows, cols


def wait_exit(container, timeout: float | None = None) -> int | None:
    """Block until the container's monitor reports the exit; its exit code, or None on
    timeout. A container that is not running answers from its record."""
    sock = connect(container)
    if sock is None:
        return _recorded_exit(container)
    deadline = None if timeout is None else time.monotonic() + timeout
    with sock:
        sock.sendall(json.dumps({"stdin": False, "stdout": False, "stderr": False}).encode()
                     + b"\n")
        reader = FrameReader()
        while True:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except socket.timeout:
                return None
            except OSError:
                data = b""
            if not data:
                return _recorded_exit(container)
            for kind, payload in reader.feed(data):
                if kind == FRAME_EXIT:
                    return json.loads(payload).get("exit_code", 0)


def _recorded_exit(container) -> int | None:
    from cli import containers
    from cli.store.store import Store
    with Store.open(container.root) as store:
        try:
            fresh = containers.reload(store, container)
        except containers.NoSuchContainer:
            return container.state.get("exit_code", 0)
    return fresh.state.get("exit_code", 0)


def attach(container, *, stdin: bool, tty: bool, sock: socket.socket | None = None,
           out_fd: int | None = None, err_fd: int | None = None) -> int:
    """Stream the container's output to ours (and our stdin to it) until it exits.
    Returns its exit code; raises Detached on Ctrl-P Ctrl-Q. OUT_FD/ERR_FD default to
    our stdout/stderr (a builder passes its own)."""
    sock = sock or connect(container)
    if sock is None:
        raise UserError("You cannot attach to a stopped container, start it first")
    in_fd = sys.stdin.fileno() if stdin or tty else -1
    out_fd = sys.stdout.fileno() if out_fd is None else out_fd
    err_fd = sys.stderr.fileno() if err_fd is None else err_fd
    raw = tty and stdin and os.isatty(in_fd)
    header = {"stdin": stdin}
    size = _terminal_size(in_fd if in_fd >= 0 and os.isatty(in_fd) else out_fd) if tty else None
    if size:
        header["rows"], header["cols"] = size
    sock.sendall(json.dumps(header).encode() + b"\n")
    saved = termios.tcgetattr(in_fd) if raw else None
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_wakeup = None
    try:
        if raw:
            ttymod.setraw(in_fd, termios.TCSANOW)   # keep what was typed ahead
            old_wakeup = signal.set_wakeup_fd(wake_w)
            signal.signal(signal.SIGWINCH, lambda *_: None)
        return _pump(sock, in_fd if stdin else None, out_fd, err_fd, wake_r, tty)
    finally:
        if saved is not None:
            termios.tcsetattr(in_fd, termios.TCSADRAIN, saved)
        if old_wakeup is not None:
            signal.set_wakeup_fd(old_wakeup)
            signal.signal(signal.SIGWINCH, signal.SIG_DFL)
        os.close(wake_r)
        os.close(wake_w)
        sock.close()


def _pump(sock, in_fd, out_fd, err_fd, wake_r, tty) -> int:
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "sock")
    sel.register(wake_r, selectors.EVENT_READ, "winch")
    if in_fd is not None:
        sel.register(in_fd, selectors.EVENT_READ, "stdin")
    reader = FrameReader()
    held = b""                     # a Ctrl-P waiting to see whether Ctrl-Q follows
    while True:
        for key, _ in sel.select():
            if key.data == "sock":
                data = sock.recv(65536)
                if not data:
                    raise UserError("lost the connection to the container monitor")
                for kind, payload in reader.feed(data):
                    if kind == FRAME_STDOUT:
                        _write_all(out_fd, payload)
                    elif kind == FRAME_STDERR:
                        _write_all(err_fd, payload)
                    elif kind == FRAME_EXIT:
                        info = json.loads(payload)
                        if info.get("error"):
                            raise UserError(info["error"], info.get("exit_code", 125))
                        return int(info.get("exit_code", 0))
            elif key.data == "winch":
                _forward_resize(sock, in_fd, wake_r)
            else:
                # A resize signalled before this input must reach the container first
                # (the signal's wake-up byte is written before select returns; epoll's
                # order of the two events is not ours to rely on).
                _forward_resize(sock, in_fd, wake_r)
                data = os.read(in_fd, 65536)
                if not data:
                    sel.unregister(in_fd)
                    if held:
                        sock.sendall(frame(FRAME_STDIN, held))
                    sock.sendall(frame(FRAME_STDIN_EOF))
                    continue
                data, held, detach = _scan_detach(held + data)
                if data:
                    sock.sendall(frame(FRAME_STDIN, data))
                if detach:
                    raise Detached()


def _forward_resize(sock, in_fd, wake_r) -> None:
    """Send our terminal's size if a SIGWINCH came since the last call."""
    try:
        if not os.read(wake_r, 512):
            return
    except BlockingIOError:
        return
    size = _terminal_size(in_fd)
    if size:
        sock.sendall(frame(FRAME_RESIZE, f"{size[0]} {size[1]}".encode()))


def _scan_detach(data: bytes) -> tuple[bytes, bytes, bool]:
    """(bytes to send, a trailing Ctrl-P to hold back, whether the detach keys came)."""
    index = data.find(DETACH_KEYS)
    if index >= 0:
        return data[:index], b"", True
    if data.endswith(DETACH_KEYS[:1]):
        return data[:-1], data[-1:], False
    return data, b"", False


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]
