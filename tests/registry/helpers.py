"""Small helpers for registry tests: skopeo, image inspect, raw registry HTTP."""

from __future__ import annotations

import hashlib
import json
import subprocess
import urllib.request

from tests.support.images import layerbox


def skopeo(*args: str) -> str:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"skopeo {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def skopeo_inspect(ref: str, *extra: str) -> dict:
    return json.loads(skopeo("inspect", "--tls-verify=false", *extra, f"docker://{ref}"))


def inspect(root, name: str) -> dict:
    return json.loads(layerbox(root, "image", "inspect", name).stdout)[0]


def manifest_digest(root, name: str) -> str:
    """The manifest digest the store keeps for NAME (the last RepoDigests/`images --digests`)."""
    from cli.store.store import Store
    with Store.open(root) as store:
        return store.resolve_image(name).manifest_digest


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def http(method: str, url: str, data: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, dict(resp.headers), resp.read()


def upload_blob(host: str, repo: str, data: bytes) -> str:
    """Monolithic POST+PUT with plain urllib (independent of the code under test)."""
    digest = sha256(data)
    _, headers, _ = http("POST", f"http://{host}/v2/{repo}/blobs/uploads/", b"")
    location = headers["Location"]
    if location.startswith("/"):
        location = f"http://{host}{location}"
    sep = "&" if "?" in location else "?"
    http("PUT", f"{location}{sep}digest={digest}", data,
         {"Content-Type": "application/octet-stream"})
    return digest


def put_manifest(host: str, repo: str, reference: str, doc: dict, media_type: str) -> str:
    data = json.dumps(doc).encode()
    http("PUT", f"http://{host}/v2/{repo}/manifests/{reference}", data,
         {"Content-Type": media_type})
    return sha256(data)


def get(host: str, path: str, accept: str = "*/*") -> bytes:
    return http("GET", f"http://{host}{path}", headers={"Accept": accept})[2]
