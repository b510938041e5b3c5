"""Bind mounts and tmpfs mounts of ``run``/``create``: ``-v``, ``--mount``, ``--tmpfs``.

Parsed here into OCI runtime-spec mounts (what ``config.json`` lists) and Docker's
``Mounts`` view for ``inspect``. What a container writes below such a mount goes to
the host, a volume (cli.volumes) or memory, never to its upper dir, so ``diff`` and
``commit`` leave it out as Docker does; the empty mount point itself is made by runc
inside the rootfs. A volume mount carries ``volume`` (its name) and gets its
``source`` when cli.volumes.attach creates the volume.
"""

from __future__ import annotations

import os
import posixpath

from cli.errors import UserError

_BIND_MODES = {"ro", "rw", "z", "Z", "private", "rprivate", "shared", "rshared", "slave",
               "rslave", "nocopy"}


def _destination(path: str, flag: str) -> str:
    if not path.startswith("/"):
        raise UserError(f"invalid {flag} specification: mount path must be absolute: {path}")
    path = posixpath.normpath(path)
    if path == "/":
        raise UserError(f"invalid {flag} specification: destination can't be '/'")
    return path


def _volume(name: str | None, destination: str, read_only: bool, copy: bool,
            flag: str) -> dict:
    from cli.volumes import is_volume_name
    if name is not None and not is_volume_name(name):
        raise UserError(f'invalid {flag} specification: "{name}" includes invalid characters '
                        'for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed')
    return {"destination": _destination(destination, flag), "type": "bind", "source": None,
            "options": ["rbind", "rprivate"] + (["ro"] if read_only else []),
            "volume": name, "anonymous": name is None, "copy": copy}


def _bind(source: str, destination: str, read_only: bool, propagation: str,
          create_missing: bool, flag: str) -> dict:
    source = os.path.normpath(source)
    if not os.path.exists(source):
        if not create_missing:
            raise UserError(f"invalid mount config for type \"bind\": bind source path does "
                            f"not exist: {source}")
        os.makedirs(source, exist_ok=True)     # docker run -v creates a missing host dir
    options = ["rbind", propagation] + (["ro"] if read_only else [])
    return {"destination": _destination(destination, flag), "type": "bind",
            "source": source, "options": options}


def parse_volume(spec: str) -> dict:
    """``-v /host:/ctr[:ro|rw][,propagation]``, ``-v NAME:/ctr[:ro]``, ``-v /ctr``."""
    parts = spec.split(":")
    if len(parts) == 1 and parts[0]:
        return _volume(None, parts[0], False, True, "volume")     # anonymous
    if len(parts) not in (2, 3) or not all(parts[:2]):
        raise UserError(f"invalid volume specification: '{spec}'")
    modes = set(parts[2].split(",")) if len(parts) == 3 else set()
    if not modes <= _BIND_MODES or {"ro", "rw"} <= modes:
        raise UserError(f"invalid mode: {parts[2]}")
    if not parts[0].startswith("/"):
        return _volume(parts[0], parts[1], "ro" in modes, "nocopy" not in modes, "volume")
    propagation = next((m for m in modes if "private" in m or "shared" in m or "slave" in m),
                       "rprivate")
    return _bind(parts[0], parts[1], "ro" in modes, propagation, True, "volume")


def parse_mount(spec: str) -> dict:
    """``--mount type=bind,source=/a,target=/b[,readonly][,bind-propagation=…]`` or
    ``--mount type=tmpfs,target=/t[,tmpfs-size=…][,tmpfs-mode=…]``."""
    fields: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if key in ("readonly", "ro") and not sep:
            value = "true"
        elif not sep:
            raise UserError(f"invalid field '{item}' must be a key=value pair")
        fields[key] = value
    kind = fields.pop("type", "volume")
    target = fields.pop("target", None) or fields.pop("destination", None) \
        or fields.pop("dst", None)
    if not target:
        raise UserError("invalid argument for --mount: target is required")
    read_only = fields.pop("readonly", fields.pop("ro", "false")).lower() in ("1", "true")
    if kind == "bind":
        source = fields.pop("source", None) or fields.pop("src", None)
        if not source:
            raise UserError("invalid argument for --mount: source is required for bind mounts")
        propagation = fields.pop("bind-propagation", "rprivate")
        mount = _bind(source, target, read_only, propagation, False, "mount")
    elif kind == "volume":
        source = fields.pop("source", None) or fields.pop("src", None)
        nocopy = fields.pop("volume-nocopy", "false").lower() in ("1", "true")
        mount = _volume(source or None, target, read_only, not nocopy, "mount")
    elif kind == "tmpfs":
        mount = _tmpfs(target, fields.pop("tmpfs-size", None), fields.pop("tmpfs-mode", None),
                       "mount")
        if read_only:
            mount["options"].append("ro")
    else:
        raise UserError(f"invalid argument for --mount: type {kind!r} is not supported "
                        "(bind, volume, tmpfs)")
    if fields:
        raise UserError(f"unexpected key '{next(iter(fields))}' in '{spec}'")
    return mount


def parse_tmpfs(spec: str) -> dict:
    """``--tmpfs /run[:size=64m,mode=1777,…]``."""
    target, _, opts = spec.partition(":")
    extra = [o for o in opts.split(",") if o]
    mount = _tmpfs(target, None, None, "tmpfs")
    mount["options"] += extra
    return mount


def _tmpfs(target: str, size: str | None, mode: str | None, flag: str) -> dict:
    options = ["nosuid", "nodev", "noexec"]
    if size:
        options.append(f"size={size}")
    if mode:
        options.append(f"mode={mode}")
    return {"destination": _destination(target, flag), "type": "tmpfs", "source": "tmpfs",
            "options": options}


def parse_all(volumes=(), mounts=(), tmpfs=()) -> list[dict]:
    parsed = [parse_volume(v) for v in volumes] + [parse_mount(m) for m in mounts] \
        + [parse_tmpfs(t) for t in tmpfs]
    seen: set[str] = set()
    for mount in parsed:
        if mount["destination"] in seen:
            raise UserError(f"Duplicate mount point: {mount['destination']}")
        seen.add(mount["destination"])
    return parsed


def docker_view(mount: dict) -> dict:
    """One entry of ``inspect``'s ``Mounts``."""
    options = mount.get("options", [])
    if mount.get("volume"):
        return {"Type": "volume", "Name": mount["volume"], "Source": mount["source"],
                "Destination": mount["destination"], "Driver": "local",
                "Mode": "ro" if "ro" in options else "z", "RW": "ro" not in options,
                "Propagation": ""}
    propagation = next((o for o in options if o.endswith(("private", "shared", "slave"))), "")
    return {"Type": mount["type"], "Source": mount["source"] if mount["type"] == "bind" else "",
            "Destination": mount["destination"], "Mode": "ro" if "ro" in options else "",
            "RW": "ro" not in options, "Propagation": propagation}
