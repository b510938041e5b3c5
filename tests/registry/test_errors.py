"""Failures are one `Error:` line with a non-zero exit, and a failed pull leaves no half image."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading

import pytest

from tests.registry.helpers import inspect
from tests.support.images import layerbox


def error_lines(out) -> list[str]:
    assert out.returncode != 0
    return out.stderr.strip().splitlines()


def no_images(root) -> bool:
    return layerbox(root, "images", "-q", "-a").stdout.strip() == ""


@pytest.fixture
def pushed_busybox(registry, busybox_root):
    """busybox pushed as HOST/err/bb:1; yields (name, layer blob digest)."""
    name = f"{registry.host}/err/bb:1"
    layerbox(busybox_root, "tag", "busybox", name)
    layerbox(busybox_root, "push", name)
    from cli.store.store import Store
    with Store.open(busybox_root) as store:
        layer = store.resolve_image(name).layers[0]
    return name, layer.digest


def test_unreachable_registry(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    out = layerbox(tmp_path / "root", "pull", f"127.0.0.1:{port}/me/x", check=False)
    assert error_lines(out) == [
        f"Error: cannot reach registry 127.0.0.1:{port}: GET http://127.0.0.1:{port}/v2/: "
        "connection refused"]


def test_unknown_tag_and_image(registry, busybox_root, tmp_path):
    out = layerbox(tmp_path / "root", "pull", f"{registry.host}/me/none:nope", check=False)
    assert error_lines(out) == [
        f"Error: manifest for {registry.host}/me/none:nope not found: manifest unknown"]
    out = layerbox(busybox_root, "push", f"{registry.host}/me/notlocal", check=False)
    assert error_lines(out)[-1] == \
        f"Error: An image does not exist locally with the tag: {registry.host}/me/notlocal"


def test_digest_mismatch_leaves_nothing_and_retry_works(registry, pushed_busybox, tmp_path):
    name, digest = pushed_busybox
    data_path = registry.blob_data_path(digest)
    backup = tmp_path / "blob"
    shutil.copy(data_path, backup)
    damaged = bytearray(backup.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    data_path.write_bytes(bytes(damaged))
    root = tmp_path / "fresh"
    try:
        out = layerbox(root, "pull", name, check=False)
    finally:
        shutil.copy(backup, data_path)
    assert error_lines(out)[-1].startswith(f"Error: layer blob {digest}: digest mismatch")
    assert no_images(root)
    layerbox(root, "pull", name)
    layerbox(root, "system", "check")


class CuttingProxy:
    """A TCP proxy to the registry that breaks requests whose first line starts with METHOD
    and contains MARKER, TIMES times: a GET's response is cut after CUT_AT bytes, other
    requests are dropped before they reach the registry."""

    def __init__(self, upstream: str, marker: str, times: int, cut_at: int = 200_000,
                 method: str = "GET"):
        self.upstream = upstream.rsplit(":", 1)
        self.marker = marker.encode()
        self.method = method.encode()
        self.times = times
        self.cut_at = cut_at
        self.cuts = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        upstream = socket.create_connection((self.upstream[0], int(self.upstream[1])))
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk or chunk[:1] == b"\x16":  # a TLS hello: plain HTTP only here
                    return
                head += chunk
            cut = head.startswith(self.method) and self.marker in head.split(b"\r\n", 1)[0] \
                and self.cuts < self.times
            if cut:
                self.cuts += 1
                if self.method != b"GET":
                    return
            upstream.sendall(head)
            if not head.startswith((b"GET", b"HEAD")):
                threading.Thread(target=self._pipe, args=(client, upstream),
                                 daemon=True).start()
            sent = 0
            while True:
                data = upstream.recv(65536)
                if not data:
                    return
                if cut and sent + len(data) >= self.cut_at:
                    client.sendall(data[:self.cut_at - sent])
                    return
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for sock in (upstream, client):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the body pipe's recv, sends FIN
                sock.close()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        """Request bodies (PATCH/PUT) after the head."""
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("cuts, succeeds", [(1, True), (5, False)])
def test_interrupted_download(registry, pushed_busybox, tmp_path, cuts, succeeds):
    """One broken download resumes with a Range request; a link that keeps breaking is an
    error that leaves no image, and a later retry works."""
    name, digest = pushed_busybox
    proxy = CuttingProxy(registry.host, f"/blobs/{digest}", times=cuts)
    via_proxy = name.replace(registry.host, proxy.host)
    root = tmp_path / "fresh"
    try:
        out = layerbox(root, "pull", via_proxy, check=False)
    finally:
        proxy.close()
    if succeeds:
        assert out.returncode == 0, out.stderr
        assert proxy.cuts == 1
        assert inspect(root, via_proxy)["RootFS"]["Layers"]
        layerbox(root, "system", "check")
        return
    lines = error_lines(out)
    assert len(lines) == 1 and lines[0].startswith("Error: blob ") and "connection closed" \
        in lines[0], lines
    assert no_images(root)
    layerbox(root, "pull", name)  # directly, without the proxy
    layerbox(root, "system", "check")


def test_failed_chunk_is_retried_once(registry, busybox_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERBOX_PUSH_CHUNK_SIZE", "65536")
    proxy = CuttingProxy(registry.host, "/blobs/uploads/", times=1, method="PATCH")
    try:
        name = f"{proxy.host}/chunks/retry:1"
        layerbox(busybox_root, "tag", "busybox", name)
        out = layerbox(busybox_root, "push", name, check=False)
    finally:
        proxy.close()
    assert out.returncode == 0, out.stderr
    assert proxy.cuts == 1
    direct = name.replace(proxy.host, registry.host)
    layerbox(tmp_path / "fresh", "pull", direct)
    assert inspect(tmp_path / "fresh", direct)["Id"] == inspect(busybox_root, "busybox")["Id"]


def test_tls_verify_true_refuses_plain_http(registry, tmp_path):
    out = layerbox(tmp_path / "fresh", "pull", "--tls-verify=true", f"{registry.host}/me/x",
                   check=False)
    lines = error_lines(out)
    assert lines[-1].startswith(f"Error: cannot reach registry {registry.host}: GET https://")
