"""Named and anonymous volumes (``-v NAME:/path``, ``-v /path``, ``docker volume …``).

A volume is a directory ``ROOT/volumes/NAME/_data`` (Docker's layout) with a small
``volume.json`` beside it, bind-mounted into containers. What a container writes
there never reaches its upper dir, so ``diff`` and ``commit`` leave it out. A new,
empty volume is filled with what the image has at the mount point the first time a
container mounts it (Docker's copy-up; ``nocopy`` turns it off). Anonymous volumes
belong to one container and go with ``rm -v`` and ``run --rm``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

from cli.errors import UserError

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def is_volume_name(text: str) -> bool:
    return bool(_NAME.match(text))


def _root(store) -> Path:
    return Path(store.root) / "volumes"


def _dir(store, name: str) -> Path:
    if not is_volume_name(name):
        raise UserError(f'"{name}" includes invalid characters for a local volume name, '
                        "only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed")
    return _root(store) / name


def create(store, name: str | None = None, labels: dict | None = None,
           anonymous: bool = False) -> dict:
    """Create NAME (a random name if None); an existing NAME is returned as it is."""
    name = name or os.urandom(32).hex()    # not secrets: it loads OpenSSL (hashlib)
    vdir = _dir(store, name)
    if (vdir / "volume.json").exists():
        return inspect(store, name)
    (vdir / "_data").mkdir(parents=True, exist_ok=True)
    meta = {"CreatedAt": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "Labels": dict(labels or {}), "Anonymous": anonymous}
    tmp = vdir / "volume.json.tmp"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, vdir / "volume.json")
    return inspect(store, name)


def inspect(store, name: str) -> dict:
    vdir = _dir(store, name)
    try:
        meta = json.loads((vdir / "volume.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"get {name}: no such volume") from None
    return {"CreatedAt": meta.get("CreatedAt"), "Driver": "local",
            "Labels": meta.get("Labels") or None, "Mountpoint": str(vdir / "_data"),
            "Name": name, "Options": None, "Scope": "local",
            "Anonymous": bool(meta.get("Anonymous"))}


def list_volumes(store) -> list[dict]:
    root = _root(store)
    if not root.is_dir():
        return []
    return [inspect(store, d.name) for d in sorted(root.iterdir())
            if (d / "volume.json").exists()]


def users(store, name: str) -> list[str]:
    """Ids of the containers whose mounts use volume NAME."""
    from cli import containers
    return [c.id for c in containers.list_containers(store)
            if any(m.get("volume") == name for m in c.record.get("mounts") or [])]


def remove(store, name: str, *, force: bool = False) -> None:
    inspect(store, name)
    in_use = users(store, name)
    if in_use and not force:
        raise UserError(f"remove {name}: volume is in use - [{', '.join(in_use)}]")
    shutil.rmtree(_dir(store, name))


def prune(store, *, all_volumes: bool = False) -> list[tuple[str, int]]:
    """Remove unused anonymous volumes (every unused one with ALL_VOLUMES), as Docker 23+
    does; returns (name, bytes reclaimed) for each."""
    removed = []
    for volume in list_volumes(store):
        if (all_volumes or volume["Anonymous"]) and not users(store, volume["Name"]):
            size = sum(p.lstat().st_size for p in Path(volume["Mountpoint"]).rglob("*"))
            shutil.rmtree(_dir(store, volume["Name"]))
            removed.append((volume["Name"], size))
    return removed


def attach(store, mounts: list[dict]) -> list[dict]:
    """Create the volumes that -v/--mount name (or leave anonymous) and point the mounts
    at their data directories."""
    resolved = []
    for mount in mounts:
        if "volume" in mount:
            volume = create(store, mount["volume"], anonymous=mount.get("anonymous", False))
            mount = {**mount, "volume": volume["Name"], "source": volume["Mountpoint"]}
        resolved.append(mount)
    return resolved


def remove_anonymous(store, mounts: list[dict]) -> None:
    """After the container that owned them is gone (rm -v, --rm)."""
    for mount in mounts:
        if mount.get("anonymous") and mount.get("volume"):
            try:
                remove(store, mount["volume"])
            except UserError:
                pass  # someone else mounts it now (--volumes-from is not supported)


def populate(rootfs: Path, mounts: list[dict]) -> None:
    """Docker's copy-up: an empty volume gets the image's content at its mount point."""
    from cli.rootpath import resolve_in_root
    for mount in mounts:
        if not mount.get("volume") or not mount.get("copy", True):
            continue
        data = Path(mount["source"])
        if any(data.iterdir()):
            continue
        image_dir = resolve_in_root(rootfs, mount["destination"])
        if not image_dir.is_dir():
            continue
        shutil.copytree(image_dir, data, symlinks=True, dirs_exist_ok=True,
                        copy_function=_copy_keeping_owner)
        st = image_dir.stat()
        os.chown(data, st.st_uid, st.st_gid)
        os.chmod(data, st.st_mode & 0o7777)
        for path in data.rglob("*"):
            src = image_dir / path.relative_to(data)
            if path.is_dir() and not path.is_symlink():
                sst = src.lstat()
                os.chown(path, sst.st_uid, sst.st_gid)


def _copy_keeping_owner(src: str, dst: str) -> None:
    shutil.copy2(src, dst, follow_symlinks=False)
    st = os.lstat(src)
    os.lchown(dst, st.st_uid, st.st_gid)
