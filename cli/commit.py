"""``commit``: a container's upper dir becomes one new layer on top of its image.

A staged mutation that returns a new image (spec/diff-commit.md section 2): validate the
``-c`` changes first (a bad one writes nothing), pause the container and flush its mount,
stream the upper dir as a layer tar straight into the store (never in memory), write the
new config with its history entry, tag, and resume.
"""

from __future__ import annotations

import contextlib
import copy

from cli import containers, logs
from cli.errors import UserError

log = logs.get(__name__)


def commit_config(base: dict, container, *, author: str, message: str,
                  changes: list[str], diff_id: str, created: str) -> dict:
    """The new image config: the base image's, updated from the container, then -c."""
    from cli.config_changes import apply_changes
    config = copy.deepcopy(base)
    inner = dict(config.get("config") or {})
    cfg = container.config
    for key in ("Cmd", "Entrypoint"):
        if cfg.get(key):
            inner[key] = list(cfg[key])
        else:
            inner.pop(key, None)
    for key in ("Env",):
        if cfg.get(key):
            inner[key] = list(cfg[key])
    for key in ("WorkingDir", "User"):
        if cfg.get(key):
            inner[key] = cfg[key]
    config["config"] = inner
    config = apply_changes(config, changes)
    rootfs = dict(config.get("rootfs") or {"type": "layers"})
    rootfs["type"] = "layers"
    rootfs["diff_ids"] = list(rootfs.get("diff_ids") or []) + [diff_id]
    config["rootfs"] = rootfs
    entry = {"created": created}
    if author:
        entry["author"] = author
    entry["created_by"] = " ".join(container.command_args)
    if message:
        entry["comment"] = message
    config["history"] = list(config.get("history") or []) + [entry]
    config["created"] = created
    # Docker keeps the commit's author and message at the top level too (image inspect's
    # Author and Comment); the base image's must not leak into the new image.
    for key, value in (("author", author), ("comment", message)):
        if value:
            config[key] = value
        else:
            config.pop(key, None)
    config.setdefault("architecture", "amd64")
    config.setdefault("os", "linux")
    return config


def export_upper(store, container):
    """Stream the container's upper dir into the store as one layer: the tar writer hands
    its bytes straight to the store's hasher and compressor (never held in memory)."""
    from overlayfs.layer_tar import LayerError, export_layer
    image = store.get_image(container.image_id)
    lowers = container.lower_dirs(store)
    try:
        return store.produce_layer(
            lambda sink: export_layer(container.dir / "upper", sink, lowers=lowers),
            parent=image.layers[-1] if image.layers else None, lazy=True)
    except LayerError as exc:
        raise _export_error(exc, LayerError) from None


def _export_error(exc: BaseException, layer_error) -> BaseException:
    if isinstance(exc, layer_error):
        return UserError(f"cannot export the container's changes: {exc}")
    return exc


def commit(store, container, *, author: str = "", message: str = "",
           changes: list[str] = (), pause: bool = True, repo: str | None = None):
    """Make and return the new image (tagged REPO[:TAG] if given)."""
    from cli.config_changes import apply_changes
    from cli.reference import parse_tagged
    from cli.store.store import now_rfc3339
    apply_changes(container_image_config(store, container), list(changes))  # validate first
    if repo is not None:
        parse_tagged(repo)                                                  # validate first
    status = container.status()
    if status == "dead":
        raise UserError(f"container {container.name}: its monitor died; remove it with rm -f")
    runc = None   # cli.runtime is 10 ms of imports: only for a container to pause
    paused_here = False
    if status == "running" and pause:
        runc = containers.runc_for(store)
        runc.pause(container.id)
        paused_here = True
    try:
        merged = container.dir / "merged"
        if status in ("running", "paused") and containers.is_mounted(merged):
            containers.syncfs(merged)
        layer = export_upper(store, container)
    finally:
        if paused_here:
            with contextlib.suppress(UserError):
                runc.resume(container.id)
    image = store.get_image(container.image_id)
    config = commit_config(store.image_config(image), container, author=author,
                           message=message, changes=list(changes), diff_id=layer.diff_id,
                           created=now_rfc3339())
    new = store.create_image(config=config, layers=list(image.layers) + [layer])
    if repo is not None:
        store.tag(new, repo)
    return new


def container_image_config(store, container) -> dict:
    return store.image_config(container.image_id)
