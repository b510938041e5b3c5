"""Small helpers for store tests: build tars, read the store's state."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
from pathlib import Path

from tests.support.images import layerbox  # noqa: F401  (re-exported for tests)


def make_tar(entries: list[tuple], fmt=tarfile.PAX_FORMAT) -> bytes:
    """Entries: (name, "file", data) | (name, "dir") | (name, "sym", target) | (name, "link", target)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for entry in entries:
            name, kind = entry[0], entry[1]
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if kind == "file":
                data = entry[2]
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, entry[2]
            elif kind == "link":
                info.type, info.linkname = tarfile.LNKTYPE, entry[2]
            tar.addfile(info)
    return out.getvalue()


def db_rows(root: Path, sql: str, *params) -> list[tuple]:
    conn = sqlite3.connect(root / "layerbox.db")
    try:
        return [tuple(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def store_files(root: Path) -> dict[str, list[str]]:
    """What is on disk: blobs, layer dirs, temp entries."""
    return {"blobs": sorted(p.name for p in (root / "oci/blobs/sha256").iterdir()),
            "layers": sorted(p.name for p in (root / "layers").iterdir()),
            "tmp": sorted(p.name for p in (root / "tmp").iterdir())}


def index_names(root: Path) -> list[str]:
    index = json.loads((root / "oci/index.json").read_text())
    return sorted((m.get("annotations") or {}).get("org.opencontainers.image.ref.name", "")
                  for m in index["manifests"])


def assert_clean(root: Path) -> None:
    """system check passes and nothing is left in tmp/."""
    result = layerbox(root, "system", "check", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert store_files(root)["tmp"] == []
