"""Docker-compatible credentials: ``config.json`` with ``{"auths": {HOST: {"auth": b64}}}``.

Where: ``--authfile`` or ``$REGISTRY_AUTH_FILE`` (Podman's rule) if given, else
``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``. Docker Hub's key is
``https://index.docker.io/v1/``. The file is written atomically with mode 0600, and other
keys in it (credsStore, proxies, …) are kept.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cli.errors import UserError
from cli.reference import DEFAULT_DOMAIN

DOCKER_HUB_KEY = "https://index.docker.io/v1/"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic_header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"


def config_path(authfile: str | None = None) -> Path:
    explicit = authfile or os.environ.get("REGISTRY_AUTH_FILE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return Path(base) / "config.json"


def registry_key(registry: str) -> str:
    return DOCKER_HUB_KEY if registry in (DEFAULT_DOMAIN, "index.docker.io") else registry


def _key_variants(registry: str) -> list[str]:
    key = registry_key(registry)
    # Entries written by other tools may carry a scheme or a path.
    return [key, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/",
            f"https://{registry}/v2/"]


def _read(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read credentials file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"cannot read credentials file {path}: not a JSON object")
    return data


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def lookup(registry: str, authfile: str | None = None) -> Credentials | None:
    auths = _read(config_path(authfile)).get("auths") or {}
    for key in _key_variants(registry):
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise UserError(f"invalid auth entry for {registry} in "
                                f"{config_path(authfile)}") from None
            return Credentials(user, password)
        if entry.get("username"):
            return Credentials(entry["username"], entry.get("password", ""))
    return None


def store(registry: str, credentials: Credentials, authfile: str | None = None) -> Path:
    path = config_path(authfile)
    data = _read(path)
    auths = data.setdefault("auths", {})
    auths[registry_key(registry)] = {
        "auth": base64.b64encode(f"{credentials.username}:{credentials.password}".encode())
        .decode()}
    _write(path, data)
    return path


def remove(registry: str, authfile: str | None = None) -> bool:
    """Forget REGISTRY's credentials; False if there were none."""
    path = config_path(authfile)
    data = _read(path)
    auths = data.get("auths") or {}
    found = [k for k in _key_variants(registry) if k in auths]
    if not found:
        return False
    for key in found:
        del auths[key]
    _write(path, data)
    return True
