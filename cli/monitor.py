"""The per-container monitor (like Podman's conmon): ``python -m cli.monitor ROOT ID``.

Started detached by ``start``/``run``; it outlives the client. It mounts the rootfs,
writes the bundle, runs ``runc create`` + ``runc start`` as a child subreaper (so the
container's init becomes its child and its exit status is ours to collect), holds the pty
master (or the stdio pipes), writes the JSON-lines log, serves attach clients on
``attach.sock``, and at the end records the exit code, unmounts, and removes the
container if it was started with ``--rm``.

Readiness: the client passes a pipe's write end as ``--ready-fd``; the monitor writes one
JSON line, ``{"status": "running"}`` (or ``"created"`` with ``--attach-first``: then it
starts the container when the first attach client has connected, so no output is lost),
or ``{"error": "...", "exit_code": N}``.

The attach socket speaks :mod:`cli.attach_protocol`.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import fcntl
import json
import logging
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from cli.attach_protocol import (FRAME_EXIT, FRAME_RESIZE, FRAME_STDERR, FRAME_STDIN,
                                 FRAME_STDIN_EOF, FRAME_STDOUT, FrameReader, frame)
from cli.store.store import now_rfc3339

log = logging.getLogger(__name__)

#: A client that does not read this much output is disconnected, not waited for.
MAX_CLIENT_BACKLOG = 8 << 20
ATTACH_FIRST_TIMEOUT = 60.0
#: After the container's init exits, how long we keep draining output its children left.
DRAIN_TIMEOUT = 2.0
PR_SET_CHILD_SUBREAPER = 36


def exit_code_of(status: int) -> int:
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 255


def start_error_exit_code(message: str) -> int:
    """Docker's codes for a command that cannot start: 127 not found, 126 not executable."""
    lowered = message.lower()
    if "not found" in lowered or "no such file" in lowered:
        return 127
    if "permission denied" in lowered:
        return 126
    return 125


class _Client:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.header: dict | None = None
        self.inbuf = bytearray()
        self.reader = FrameReader()
        self.outbuf = bytearray()
        self.closing = False


class Monitor:
    def __init__(self, store, container, ready_fd: int, attach_first: bool, mounting):
        from cli import containers
        self.store = store
        self.mounting = mounting               # containers.PendingMount, started early
        self.container = container
        self.ready_fd = ready_fd
        self.attach_first = attach_first
        self.cdir = container.dir
        self.runc = containers.runc_for(store)
        self.tty = bool(container.config.get("Tty"))
        self.open_stdin = bool(container.config.get("OpenStdin"))
        self.selector = selectors.DefaultSelector()
        self.clients: list[_Client] = []
        self.master: int | None = None         # pty master (tty)
        self.stdin_w: int | None = None        # container stdin pipe (non-tty -i)
        self.outputs: dict[int, str] = {}      # fd → "stdout"/"stderr"
        self.stdin_pending = bytearray()
        self.stdin_closing = False             # EOF came while input was still pending
        self.pid: int | None = None
        self.network = None                    # cli.network.UserModeNetwork, for "bridge"
        self.exit_status: int | None = None
        self.log_file = open(self.cdir / "container.log", "ab", buffering=0)
        self.listener: socket.socket | None = None
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # -- readiness --------------------------------------------------------------------

    def _ready(self, message: dict) -> None:
        _send_ready(self.ready_fd, message)
        self.ready_fd = -1

    # -- main -------------------------------------------------------------------------

    def run(self) -> int:
        from cli import containers, runtime, volumes
        in_runc = False     # a failure before runc is ours (125); runc's may be 126/127
        try:
            merged = self.mounting.wait()
            volumes.populate(merged, self.container.record.get("mounts") or [])
            process = runtime.ProcessSpec(
                args=self.container.command_args, env=self.container.config.get("Env") or [],
                workdir=self.container.config.get("WorkingDir") or "/",
                user=self.container.config.get("User") or "",
                hostname=self.container.config.get("Hostname") or self.container.short_id,
                tty=self.tty, network=self.container.record.get("network", "private"))
            spec = runtime.build_spec(process, rootfs=merged, container_id=self.container.id,
                                      etc_dir=self.cdir / "etc",
                                      extra_mounts=self.container.record.get("mounts") or [],
                                      security=runtime.Security(
                                          **self.container.record.get("security", {})))
            runtime.write_bundle(self.cdir / "bundle", spec)
            in_runc = True
            # One `runc run -d` instead of `runc create` + `runc start` (a runc process
            # less, ~10 ms) when nothing must happen between the two: the bridge network
            # is joined to the created namespace, and a tty gets the attached client's
            # size first. Output is not lost meanwhile: we read the pipes only once the
            # first client is attached.
            started = not self.tty and self.container.record.get("network") != "bridge"
            self._create(start=started)
            self._connect_network()
        except Exception as exc:  # every failure before start is reported to the client
            message = str(exc) or type(exc).__name__
            log.error("start failed: %s", message, exc_info=not isinstance(exc, OSError)
                      and not hasattr(exc, "exit_code"))
            code = start_error_exit_code(message) if in_runc else 125
            self._finish(code, error=message)
            self._ready({"error": message, "exit_code": code})
            return code
        self._listen()
        if self.attach_first:
            self._ready({"status": "created"})
            self._wait_first_client()
        try:
            if not started:
                self.runc.start(self.container.id)
        except Exception as exc:
            message = str(exc)
            code = start_error_exit_code(message)
            self._finish(code, error=message)
            self._ready({"error": message, "exit_code": code})
            self._send_exit(code, message)
            return code
        containers.update_state(self.store, self.container.id, status="running", pid=self.pid,
                                started_at=now_rfc3339(), exit_code=0, error="")
        self._ready({"status": "running"})
        self._loop()
        code = exit_code_of(self.exit_status if self.exit_status is not None else 255 << 8)
        self._finish(code)
        self._send_exit(code)
        return code

    def _create(self, start: bool = False) -> None:
        """``runc create`` (START: ``runc run --detach``, started as well)."""
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        pid_file = self.cdir / "bundle" / "pid"
        pid_file.unlink(missing_ok=True)
        runc_log = self.cdir / "bundle" / "runc.log"
        runc_log.unlink(missing_ok=True)
        args = ["--log", str(runc_log), "--log-format", "json",
                *(["run", "--detach"] if start else ["create"]),
                "--bundle", str(self.cdir / "bundle"), "--pid-file", str(pid_file)]
        devnull = os.open(os.devnull, os.O_RDWR)
        child_fds: list[int] = []
        console = None
        if self.tty:
            console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            # runc chdirs into the bundle before dialing; a relative path keeps the
            # socket address short (sun_path is 108 bytes, container dirs can be longer).
            (self.cdir / "bundle" / "console.sock").unlink(missing_ok=True)
            console.bind("bundle/console.sock")     # relative to our cwd, the container dir
            console.listen(1)
            args += ["--console-socket", "console.sock"]
            stdio = (devnull, devnull, devnull)
        else:
            if self.open_stdin:
                stdin_r, self.stdin_w = os.pipe()
                child_fds.append(stdin_r)
            else:
                stdin_r = devnull
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            child_fds += [out_w, err_w]
            self.outputs = {out_r: "stdout", err_r: "stderr"}
            stdio = (stdin_r, out_w, err_w)
        proc = subprocess.Popen(self.runc.command(*args, self.container.id), stdin=stdio[0],
                                stdout=stdio[1], stderr=stdio[2], cwd=self.cdir)
        if console is not None:
            console.settimeout(1.0)
            while self.master is None:
                try:
                    conn, _ = console.accept()
                except socket.timeout:
                    if proc.poll() is not None:
                        break
                    continue
                with conn:
                    _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
                    self.master = fds[0] if fds else None
            console.close()
            (self.cdir / "bundle" / "console.sock").unlink(missing_ok=True)
        rc = proc.wait()
        for fd in child_fds:
            os.close(fd)
        os.close(devnull)
        if rc != 0:
            raise RuntimeError(_runc_log_error(runc_log) or f"runc create failed ({rc})")
        self.pid = int(pid_file.read_text().strip())
        for fd in list(self.outputs) + ([self.master] if self.master is not None else []):
            os.set_blocking(fd, False)
        if self.stdin_w is not None:
            os.set_blocking(self.stdin_w, False)

    def _connect_network(self) -> None:
        """The default network: a user-mode stack in the namespace runc just made."""
        if self.container.record.get("network") != "bridge":
            return
        from cli.network import PortMapping, UserModeNetwork
        # Relative to our cwd, the container dir: sun_path is only 108 bytes.
        self.network = UserModeNetwork(self.pid, Path("slirp.sock"))
        for port in self.container.record.get("ports") or []:
            self.network.publish(PortMapping(**port))

    def _listen(self) -> None:
        (self.cdir / "attach.sock").unlink(missing_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind("attach.sock")
        self.listener.listen(16)
        self.listener.setblocking(False)

    def _wait_first_client(self) -> None:
        deadline = time.monotonic() + ATTACH_FIRST_TIMEOUT
        self.listener.setblocking(True)
        while time.monotonic() < deadline:
            self.listener.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                sock, _ = self.listener.accept()
            except (socket.timeout, OSError):
                break
            client = _Client(sock)
            sock.settimeout(10)
            try:
                line = b""
                while not line.endswith(b"\n"):
                    chunk = sock.recv(1)
                    if not chunk:
                        break
                    line += chunk
                client.header = json.loads(line or b"{}")
            except (OSError, ValueError):
                sock.close()
                continue
            self._apply_resize(client.header.get("rows"), client.header.get("cols"))
            sock.setblocking(False)
            self.clients.append(client)
            break
        self.listener.setblocking(False)

    # -- the event loop -------------------------------------------------------------

    def _loop(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        sel = self.selector
        sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        sel.register(self.listener, selectors.EVENT_READ, "listen")
        for fd in self.outputs:
            sel.register(fd, selectors.EVENT_READ, "output")
        if self.master is not None:
            sel.register(self.master, selectors.EVENT_READ, "output")
        for client in self.clients:
            sel.register(client.sock, selectors.EVENT_READ, client)
        self._reap()
        drain_deadline = None
        while True:
            open_outputs = list(self.outputs) + ([self.master] if self.master is not None else [])
            if self.exit_status is not None:
                if not open_outputs:
                    break
                if drain_deadline is None:
                    drain_deadline = time.monotonic() + DRAIN_TIMEOUT
                elif time.monotonic() > drain_deadline:
                    break
            timeout = None if drain_deadline is None else max(0.0, drain_deadline - time.monotonic())
            for key, events in sel.select(timeout):
                what = key.data
                if what == "wake":
                    _drain_fd(self.wake_r)
                    self._reap()
                elif what == "listen":
                    self._accept()
                elif what == "output":
                    self._read_output(key.fd)
                elif what == "stdin":
                    self._flush_stdin()
                elif isinstance(what, _Client):
                    if events & selectors.EVENT_READ:
                        self._client_readable(what)
                    if events & selectors.EVENT_WRITE and what in self.clients:
                        self._client_flush(what)
        signal.set_wakeup_fd(-1)
        for fd in list(self.outputs):
            self._close_output(fd)
        if self.master is not None:
            self._close_output(self.master)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.exit_status = status
                log.debug("container process %d exited: %d", pid, status)

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        client = _Client(sock)
        self.clients.append(client)
        self.selector.register(sock, selectors.EVENT_READ, client)

    def _read_output(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:       # EIO: the pty's last slave closed
            if exc.errno != errno.EIO:
                log.debug("read output: %s", exc)
            data = b""
        if not data:
            self._close_output(fd)
            return
        stream = self.outputs.get(fd, "stdout")
        self._log(stream, data)
        kind = FRAME_STDERR if stream == "stderr" else FRAME_STDOUT
        for client in list(self.clients):
            if client.header is not None and client.header.get(stream, True):
                self._send(client, frame(kind, data))

    def _close_output(self, fd: int) -> None:
        try:
            self.selector.unregister(fd)
        except (KeyError, ValueError):
            pass
        if fd == self.master:
            # keep the master open until the end would block the next read with EIO forever
            self.master = None
        self.outputs.pop(fd, None)
        os.close(fd)

    def _log(self, stream: str, data: bytes) -> None:
        entry = {"log": data.decode("utf-8", "replace"), "stream": stream,
                 "time": _now_nano()}
        self.log_file.write((json.dumps(entry) + "\n").encode())

    def _client_readable(self, client: _Client) -> None:
        try:
            data = client.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        if client.header is None:
            client.inbuf += data
            if b"\n" not in client.inbuf:
                return
            line, _, rest = bytes(client.inbuf).partition(b"\n")
            try:
                client.header = json.loads(line)
            except ValueError:
                self._drop(client)
                return
            self._apply_resize(client.header.get("rows"), client.header.get("cols"))
            data = rest
        for kind, payload in client.reader.feed(data):
            if kind == FRAME_STDIN and client.header.get("stdin"):
                self._write_stdin(payload)
            elif kind == FRAME_STDIN_EOF and client.header.get("stdin"):
                self._stdin_eof()
            elif kind == FRAME_RESIZE:
                rows, _, cols = payload.decode().partition(" ")
                self._apply_resize(rows, cols)

    def _apply_resize(self, rows, cols) -> None:
        if self.master is None or not rows or not cols:
            return
        try:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ,
                        struct.pack("HHHH", int(rows), int(cols), 0, 0))
        except (OSError, ValueError):
            pass

    def _write_stdin(self, data: bytes) -> None:
        target = self.master if self.tty else self.stdin_w
        if target is None:
            return
        self.stdin_pending += data
        self._flush_stdin()

    def _flush_stdin(self) -> None:
        target = self.master if self.tty else self.stdin_w
        if target is None:
            self.stdin_pending.clear()
            return
        while self.stdin_pending:
            try:
                n = os.write(target, self.stdin_pending)
            except BlockingIOError:
                break
            except OSError:
                self.stdin_pending.clear()
                break
            del self.stdin_pending[:n]
        if not self.tty:
            registered = target in self.selector.get_map()
            if self.stdin_pending and not registered:
                self.selector.register(target, selectors.EVENT_WRITE, "stdin")
            elif not self.stdin_pending and registered:
                self.selector.unregister(target)
                if self.stdin_closing:
                    self._stdin_eof()

    def _stdin_eof(self) -> None:
        if self.tty or self.stdin_w is None:
            return
        if self.stdin_pending:
            self.stdin_closing = True
            return
        if self.stdin_w in self.selector.get_map():
            self.selector.unregister(self.stdin_w)
        os.close(self.stdin_w)
        self.stdin_w = None

    def _send(self, client: _Client, data: bytes) -> None:
        client.outbuf += data
        if len(client.outbuf) > MAX_CLIENT_BACKLOG:
            log.warning("attach client too slow; disconnecting it")
            self._drop(client)
            return
        self._client_flush(client)

    def _client_flush(self, client: _Client) -> None:
        while client.outbuf:
            try:
                n = client.sock.send(client.outbuf)
            except BlockingIOError:
                break
            except OSError:
                self._drop(client)
                return
            del client.outbuf[:n]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbuf else 0)
        try:
            self.selector.modify(client.sock, events, client)
        except (KeyError, ValueError):
            pass

    def _drop(self, client: _Client) -> None:
        if client in self.clients:
            self.clients.remove(client)
        try:
            self.selector.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.sock.close()

    # -- the end --------------------------------------------------------------------

    def _finish(self, code: int, error: str = "") -> None:
        """Record the exit, unmount, and remove the container if it asked for --rm."""
        from cli import containers
        try:
            self.runc.delete(self.container.id, force=True)
        except Exception as exc:
            log.warning("runc delete: %s", exc)
        if self.network is not None:
            self.network.stop()
            self.network = None
        containers.unmount(self.cdir / "merged")
        try:
            containers.update_state(self.store, self.container.id, status="exited",
                                    exit_code=code, error=error,
                                    finished_at=now_rfc3339(), pid=0)
        except containers.NoSuchContainer:     # `rm -f` removed it while we finished
            return
        if self.container.record.get("auto_remove"):
            try:
                containers.remove(self.store, containers.reload(self.store, self.container),
                                  volumes=True)     # --rm takes its anonymous volumes too
            except Exception as exc:
                log.warning("auto-remove failed: %s", exc)
        if self.listener is not None:
            (self.cdir / "attach.sock").unlink(missing_ok=True)

    def _send_exit(self, code: int, error: str = "") -> None:
        payload = json.dumps({"exit_code": code, "error": error}).encode()
        for client in list(self.clients):
            client.sock.setblocking(True)
            client.sock.settimeout(5)
            try:
                client.sock.sendall(bytes(client.outbuf) + frame(FRAME_EXIT, payload))
            except OSError:
                pass
            client.sock.close()
        self.clients.clear()


def _send_ready(fd: int, message: dict) -> None:
    if fd < 0:
        return
    try:
        os.write(fd, (json.dumps(message) + "\n").encode())
    except OSError:
        pass
    os.close(fd)


def _runc_log_error(path: Path) -> str | None:
    """The last error runc logged (JSON lines), without its decoration."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("error", "fatal"):
            return entry.get("msg")
    return None


def _drain_fd(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _now_nano() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="layerbox-monitor")
    parser.add_argument("--ready-fd", type=int, default=-1)
    parser.add_argument("--attach-first", action="store_true")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("root")
    parser.add_argument("container_id")
    args = parser.parse_args(argv)
    # Double fork: the client reaps the first child at once; we are re-parented.
    if os.fork():
        os._exit(0)
    return serve(args.root, args.container_id, args.ready_fd, args.attach_first, args.debug)


def serve(root: str, container_id: str, ready_fd: int, attach_first: bool,
           debug: bool, mounting=None) -> int:
    """Monitor the container until it has stopped; the exit code. MOUNTING: its rootfs
    mount if started already (a RelayedMount from the client that forked us)."""
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE, signal.SIGTTOU, signal.SIGTTIN):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from cli import containers
    from cli.store.store import Store
    try:
        store = Store.open(root)
        container = containers.lookup(store, container_id)
        os.chdir(container.dir)
    except BaseException:
        if mounting is not None:
            mounting.abandon()
        raise
    # The mount program takes longest to come up: it starts first and the rest of the
    # set-up overlaps with it (Monitor.run waits for it before it needs the rootfs).
    if mounting is None:
        mounting = containers.start_mount_rootfs(container, store)
    failed = {"error": f"the container monitor failed; see {container.dir / 'monitor.log'}",
              "exit_code": 125}
    try:
        containers.update_state(store, container.id, monitor_pid=os.getpid(),
                                monitor_start=containers.process_start_ticks(os.getpid()))
        monitor = Monitor(store, container, ready_fd, attach_first, mounting)
    except Exception:
        log.exception("monitor failed")
        mounting.abandon()
        _send_ready(ready_fd, failed)
        return 125
    try:
        return monitor.run()
    except Exception:
        log.exception("monitor failed")
        monitor._ready(failed)
        return 125


if __name__ == "__main__":
    sys.exit(main())
