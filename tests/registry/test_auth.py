"""login/logout and authenticated push/pull: htpasswd (basic) on the real registry, and the
bearer-token flow against a small token server."""

from __future__ import annotations

import base64
import http.server
import json
import os
import stat
import threading

import pytest

from cli.registry import auth
from tests.registry.conftest import USERS
from tests.registry.helpers import inspect, manifest_digest, skopeo_inspect
from tests.support.images import layerbox

USER, PASSWORD = next(iter(USERS.items()))


def config_json(tmp_path) -> dict:
    return json.loads((tmp_path / "docker-config" / "config.json").read_text())


def test_push_without_login_is_one_clear_error(auth_registry, busybox_root):
    name = f"{auth_registry.host}/me/x"
    layerbox(busybox_root, "tag", "busybox", name)
    out = layerbox(busybox_root, "push", name, check=False)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        f"Error: unauthorized: authentication required for {auth_registry.host}"]


def test_login_wrong_password(auth_registry, busybox_root, tmp_path):
    out = layerbox(busybox_root, "login", "-u", USER, "--password-stdin", auth_registry.host,
                   input=b"wrong\n", check=False)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        f"Error: unauthorized: incorrect username or password for {auth_registry.host}"]
    assert not (tmp_path / "docker-config" / "config.json").exists()


def test_login_push_pull_logout(auth_registry, busybox_root, tmp_path):
    host = auth_registry.host
    out = layerbox(busybox_root, "login", "-u", USER, "--password-stdin", host,
                   input=PASSWORD.encode() + b"\n")
    assert out.stdout == "Login Succeeded\n"
    path = tmp_path / "docker-config" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entry = config_json(tmp_path)["auths"][host]
    assert base64.b64decode(entry["auth"]).decode() == f"{USER}:{PASSWORD}"

    name = f"{host}/me/secret:1"
    layerbox(busybox_root, "tag", "busybox", name)
    layerbox(busybox_root, "push", name)
    remote = skopeo_inspect(name, "--creds", f"{USER}:{PASSWORD}")
    assert remote["Digest"] == manifest_digest(busybox_root, "busybox")
    layerbox(tmp_path / "empty", "pull", name)
    assert inspect(tmp_path / "empty", name)["Id"] == inspect(busybox_root, "busybox")["Id"]

    assert layerbox(busybox_root, "logout", host).stdout == \
        f"Removing login credentials for {host}\n"
    assert host not in config_json(tmp_path)["auths"]
    assert layerbox(busybox_root, "logout", host).stdout == f"Not logged in to {host}\n"
    out = layerbox(tmp_path / "empty2", "pull", name, check=False)
    assert out.returncode != 0 and out.stderr.startswith("Error: unauthorized")


def test_authfile_and_registry_auth_file(auth_registry, busybox_root, tmp_path, monkeypatch):
    """Podman's --authfile / $REGISTRY_AUTH_FILE take precedence over DOCKER_CONFIG."""
    authfile = tmp_path / "auth.json"
    layerbox(busybox_root, "login", "--authfile", str(authfile), "-u", USER, "-p", PASSWORD,
             auth_registry.host)
    assert auth_registry.host in json.loads(authfile.read_text())["auths"]
    assert not (tmp_path / "docker-config" / "config.json").exists()
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(authfile))
    name = f"{auth_registry.host}/podman/style:1"
    layerbox(busybox_root, "tag", "busybox", name)
    layerbox(busybox_root, "push", name)


def test_credentials_file_keeps_other_keys(tmp_path):
    path = tmp_path / "docker-config" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"auths": {"other.io": {"auth": "eDp5"}}, "credsStore": "pass"}))
    auth.store("127.0.0.1:5000", auth.Credentials("u", "p:w"))
    data = json.loads(path.read_text())
    assert data["credsStore"] == "pass" and "other.io" in data["auths"]
    assert auth.lookup("127.0.0.1:5000") == auth.Credentials("u", "p:w")
    assert auth.lookup("docker.io") is None
    auth.store("docker.io", auth.Credentials("hub", "x"))
    assert "https://index.docker.io/v1/" in json.loads(path.read_text())["auths"]
    assert auth.remove("127.0.0.1:5000") and not auth.remove("127.0.0.1:5000")


class _TokenRegistry(http.server.BaseHTTPRequestHandler):
    """/v2/ wants a bearer token; /token hands one out for the right basic credentials."""

    token = "tok-123"
    scopes_seen: list = []

    def do_GET(self):
        port = self.server.server_address[1]
        if self.path.startswith("/token"):
            expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            self.scopes_seen.append(self.path)
            body = json.dumps({"token": self.token}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.headers.get("Authorization") == f"Bearer {self.token}":
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        self.send_response(401)
        self.send_header("WWW-Authenticate", f'Bearer realm="http://127.0.0.1:{port}/token",'
                                             'service="test-registry"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def token_registry():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_bearer_token_login(token_registry, tmp_path):
    root = tmp_path / "root"
    out = layerbox(root, "login", "-u", USER, "--password-stdin", token_registry,
                   input=PASSWORD.encode())
    assert out.stdout == "Login Succeeded\n"
    assert "service=test-registry" in _TokenRegistry.scopes_seen[-1]
    assert config_json(tmp_path)["auths"][token_registry]
    out = layerbox(root, "login", "-u", USER, "-p", "nope", token_registry, check=False)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1] == \
        f"Error: unauthorized: incorrect username or password for {token_registry}"
    assert os.environ["DOCKER_CONFIG"].startswith(str(tmp_path))


def test_parse_challenge():
    from cli.registry.client import parse_challenge
    assert parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                           'scope="repository:library/busybox:pull"') == ("bearer", {
                               "realm": "https://auth.docker.io/token",
                               "service": "registry.docker.io",
                               "scope": "repository:library/busybox:pull"})
    assert parse_challenge('Basic realm="layerbox-test"') == ("basic", {"realm": "layerbox-test"})
