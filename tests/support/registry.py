"""A real distribution registry (Debian's ``docker-registry``) on 127.0.0.1 for tests.

``start_registry(tmp, users=None)`` is a context manager yielding a :class:`Registry`:
a free port, storage in a temp dir, plain HTTP; with ``users`` ({name: password}) it
uses a bcrypt htpasswd file (``htpasswd -Bbn``) and basic auth. It polls ``/v2/`` until
the server answers, fails fast if the server died, and always kills it in ``finally``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REGISTRY_BIN = "/usr/bin/docker-registry"
START_TIMEOUT = 30


@dataclass(frozen=True)
class Registry:
    host: str          # "127.0.0.1:PORT"
    storage: Path      # the registry's rootdirectory
    users: dict

    def blob_data_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes (to damage them in tests)."""
        hexpart = digest.split(":", 1)[1]
        return (self.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart
                / "data")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _htpasswd(users: dict, path: Path) -> None:
    lines = [subprocess.run(["htpasswd", "-Bbn", name, password], check=True,
                            capture_output=True, text=True).stdout.strip()
             for name, password in users.items()]
    path.write_text("\n".join(lines) + "\n")


def require_tools() -> None:
    missing = [t for t in (REGISTRY_BIN, "htpasswd", "skopeo") if not shutil.which(t)]
    if missing:
        raise RuntimeError(f"missing {', '.join(missing)}: run ./scripts/setup "
                           "(apt packages docker-registry, apache2-utils, skopeo)")


@contextlib.contextmanager
def start_registry(tmp: Path, users: dict | None = None):
    require_tools()
    tmp = Path(tmp)
    storage = tmp / "storage"
    storage.mkdir(parents=True)
    port = _free_port()
    auth = ""
    if users:
        _htpasswd(users, tmp / "htpasswd")
        auth = f"auth:\n  htpasswd:\n    realm: layerbox-test\n    path: {tmp / 'htpasswd'}\n"
    config = tmp / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth}")
    log = open(tmp / "registry.log", "wb")
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited ({proc.returncode}): "
                                   f"{(tmp / 'registry.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # 401 from an auth-enabled registry: it answers
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("docker-registry did not answer /v2/ in time") from None
                time.sleep(0.05)  # poll interval, not a wait for an event we could observe
        yield Registry(f"127.0.0.1:{port}", storage, dict(users or {}))
    finally:
        proc.kill()
        proc.wait()
        log.close()
