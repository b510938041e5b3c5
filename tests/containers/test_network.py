"""The default network (user-mode stack in the container's own namespace): outbound
connections, published ports (-p), resolv.conf; none and host as Docker has them."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from tests.support.images import layerbox


def _host_address() -> str | None:
    """A global IPv4 address of this machine (what a container can reach)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True).stdout.split()
    return out[out.index("inet") + 1].split("/")[0] if "inet" in out else None


@contextlib.contextmanager
def _http_server(directory):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_default_network_reaches_the_host(root, tmp_path):
    address = _host_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    (tmp_path / "index.html").write_text("hello from the host\n")
    with _http_server(tmp_path) as port:
        out = layerbox(root, "run", "--rm", "busybox", "sh", "-c",
                       f"cat /etc/resolv.conf; wget -qO- http://{address}:{port}/index.html")
    assert out.stdout.startswith("nameserver 10.0.2.3\n")
    assert out.stdout.endswith("hello from the host\n")


def test_published_port_reaches_the_container(root):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    layerbox(root, "run", "-d", "--name", "web", "-p", f"{free}:80", "busybox", "sh", "-c",
             "echo served > /page; exec httpd -f -p 80 -h /")
    deadline, body = time.monotonic() + 30, None
    while body is None and time.monotonic() < deadline:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{free}/page", timeout=5).read()
        except OSError:
            pass
    assert body == b"served\n"
    assert f"0.0.0.0:{free}->80/tcp" in layerbox(root, "ps").stdout
    assert layerbox(root, "port", "web").stdout == f"80/tcp -> 0.0.0.0:{free}\n"
    settings = json.loads(layerbox(root, "inspect", "web").stdout)[0]["NetworkSettings"]
    assert settings["IPAddress"] == "10.0.2.100"
    layerbox(root, "rm", "-f", "web")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{free}/page", timeout=2)


def test_none_and_host_and_bad_networks(root):
    none = layerbox(root, "run", "--rm", "--network", "none", "busybox", "sh", "-c",
                    "ls /sys/class/net").stdout.split()
    assert none == ["lo"]
    host = layerbox(root, "run", "--rm", "--network", "host", "busybox", "hostname").stdout
    assert host.strip() == socket.gethostname()
    bad = layerbox(root, "run", "--rm", "--network", "bogus", "busybox", "true", check=False)
    assert bad.returncode != 0 and "network bogus not found" in bad.stderr
    bad_port = layerbox(root, "run", "--rm", "-p", "99999:1", "busybox", "true", check=False)
    assert bad_port.returncode != 0 and bad_port.stderr.count("\n") == 1
