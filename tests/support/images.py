"""Image fixtures for everyone's tests: a temp store root with ``busybox:latest`` imported.

Use in a conftest.py::

    from tests.support.images import busybox_root, busybox_tar, busybox_store_template  # noqa: F401

``busybox_root`` is a fresh store root (a ``pathlib.Path``) per test, copied from one
store made per session by ``layerbox --root R import busybox.tar busybox:latest`` (with
docker hub busybox's ``PATH`` and ``CMD ["sh"]``). Pass it as ``--root`` /
``LAYERBOX_ROOT``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BUSYBOX_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def layerbox(root, *args: str, input: bytes | None = None, check: bool = True,
             timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real CLI (``python -m cli.main --root ROOT ARGS``); text output."""
    proc = subprocess.run([sys.executable, "-m", "cli.main", "--root", str(root), *args],
                          input=input, capture_output=True, cwd=REPO_ROOT, timeout=timeout)
    out = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(),
                                      proc.stderr.decode())
    if check and out.returncode != 0:
        raise AssertionError(f"layerbox {' '.join(args)} failed ({out.returncode}):\n"
                             f"{out.stdout}{out.stderr}")
    return out


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory) -> Path:
    """The deterministic busybox rootfs tar (cli.busybox), made once per session."""
    from cli.busybox import write_busybox_rootfs_tar
    path = tmp_path_factory.mktemp("busybox") / "busybox.tar"
    with open(path, "wb") as f:
        write_busybox_rootfs_tar(f)
    return path


@pytest.fixture(scope="session")
def busybox_store_template(tmp_path_factory, busybox_tar) -> Path:
    root = tmp_path_factory.mktemp("busybox-store") / "root"
    layerbox(root, "import", "-c", f"ENV {BUSYBOX_PATH_ENV}", "-c", 'CMD ["sh"]',
             str(busybox_tar), "busybox:latest")
    return root


@pytest.fixture
def busybox_root(tmp_path, busybox_store_template) -> Path:
    """A fresh store root with busybox:latest, private to this test."""
    root = tmp_path / "root"
    shutil.copytree(busybox_store_template, root, symlinks=True)
    return root
