"""The default ("bridge") network of a container: its own network namespace with a
user-mode network stack (slirp4netns, as rootless Podman uses) giving it outbound
connectivity, a DNS forwarder and published ports (``-p``), without touching the
host's interfaces or firewall.

Inside the container: ``tap0`` with 10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3.
The monitor starts the stack once runc has created the container (the namespace
exists) and before its process starts; the stack exits with the monitor (exit fd).
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import socket
import subprocess
import time
from pathlib import Path

from cli.errors import UserError
from cli.values import Record

SLIRP = "slirp4netns"
CONTAINER_IP = "10.0.2.100"
GATEWAY = "10.0.2.2"
DNS_SERVER = "10.0.2.3"
READY_TIMEOUT = 10.0
#: Network modes: Docker's names, plus "private" (loopback only) kept from before.
MODES = ("bridge", "host", "none", "private")


def normalize_mode(mode: str) -> str:
    if mode in ("default", "bridge"):
        return "bridge"
    if mode not in MODES:
        raise UserError(f'network {mode} not found')
    return mode


class PortMapping(Record):
    """host_ip, host_port, container_port, proto ("tcp")."""

    __slots__ = FIELDS = ("host_ip", "host_port", "container_port", "proto")
    DEFAULTS = ("tcp",)

    def docker_key(self) -> str:
        return f"{self.container_port}/{self.proto}"


_PUBLISH = re.compile(r"^(?:(?:(?P<ip>[0-9.]+):)?(?P<host>\d*):)?(?P<ctr>\d+)(?:/(?P<proto>tcp|udp))?$")


def parse_publish(spec: str) -> PortMapping:
    """``-p [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]``; no host port picks a free one."""
    match = _PUBLISH.match(spec)
    if not match:
        raise UserError(f"invalid port specification: \"{spec}\"")
    proto = match["proto"] or "tcp"
    ctr = int(match["ctr"])
    host = int(match["host"]) if match["host"] else _free_port(proto)
    for port in (ctr, host):
        if not 0 < port < 65536:
            raise UserError(f"invalid port specification: \"{spec}\"")
    return PortMapping(match["ip"] or "0.0.0.0", host, ctr, proto)


def _free_port(proto: str) -> int:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def resolv_conf(host_text: str) -> str:
    """The host's search and options lines, with slirp's DNS forwarder as the server."""
    kept = [line for line in host_text.splitlines()
            if line.split()[:1] in (["search"], ["options"])]
    return "\n".join([f"nameserver {DNS_SERVER}"] + kept) + "\n"


class UserModeNetwork:
    """A running slirp4netns attached to the network namespace of PID."""

    def __init__(self, pid: int, api_socket: Path):
        binary = shutil.which(SLIRP)
        if binary is None:
            raise UserError(f"{SLIRP} not found: the default network needs it "
                            "(./scripts/setup installs it; or use --network host|none)")
        self.api_socket = api_socket
        api_socket.unlink(missing_ok=True)
        ready_r, ready_w = os.pipe()
        # slirp4netns exits when this pipe's write end closes: with us, whatever kills us.
        self._exit_r, self._exit_w = os.pipe()
        os.set_inheritable(self._exit_w, False)
        try:
            self.proc = subprocess.Popen(
                [binary, "--configure", "--mtu=65520", "--disable-host-loopback",
                 f"--ready-fd={ready_w}", f"--exit-fd={self._exit_r}",
                 f"--api-socket={api_socket}", str(pid), "tap0"],
                pass_fds=(ready_w, self._exit_r), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        finally:
            os.close(ready_w)
            os.close(self._exit_r)
        try:
            self._wait_ready(ready_r)
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(ready_r)

    def _wait_ready(self, ready_r: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select([ready_r], [], [], max(0.0, remaining))
            if readable:
                if os.read(ready_r, 1) == b"1":
                    return
                break                      # EOF: it exited before configuring
            if remaining <= 0:
                break
        err = self.proc.stderr.read().decode(errors="replace").strip() \
            if self.proc.poll() is not None else "timed out"
        raise UserError(f"cannot set up the container network: "
                        f"{err.splitlines()[-1] if err else 'slirp4netns failed'}")

    def publish(self, mapping: PortMapping) -> None:
        request = {"execute": "add_hostfwd",
                   "arguments": {"proto": mapping.proto, "host_addr": mapping.host_ip,
                                 "host_port": mapping.host_port,
                                 "guest_addr": CONTAINER_IP,
                                 "guest_port": mapping.container_port}}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(READY_TIMEOUT)
            sock.connect(str(self.api_socket))
            sock.sendall(json.dumps(request).encode())
            sock.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
        answer = json.loads(reply or b"{}")
        if "error" in answer:
            desc = answer["error"].get("desc", "failed") if isinstance(answer["error"], dict) \
                else answer["error"]
            raise UserError(f"cannot publish {mapping.host_ip}:{mapping.host_port}->"
                            f"{mapping.container_port}/{mapping.proto}: {desc}")

    def stop(self) -> None:
        if self._exit_w >= 0:
            os.close(self._exit_w)
            self._exit_w = -1
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.api_socket.unlink(missing_ok=True)
