"""``image inspect``'s JSON object for one image, shaped like Docker's."""

from __future__ import annotations

from cli.store.model import Image
from cli.store.store import Store

_DOCKER_CONFIG_DEFAULTS = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
    "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
    "OnBuild": None, "Labels": None,
}
ZERO_TIME = "0001-01-01T00:00:00Z"


def inspect_image(store: Store, image: Image) -> dict:
    config = image.config
    conn = store.conn
    row = conn.execute("SELECT size FROM images WHERE id=?", (image.id,)).fetchone()
    last_tag = conn.execute("SELECT MAX(tagged_at) FROM tags WHERE image_id=?",
                            (image.id,)).fetchone()[0]
    repo_digests = [r[0] for r in conn.execute(
        "SELECT name FROM repo_digests WHERE image_id=? ORDER BY name", (image.id,))]
    from cli.reference import parse_reference
    repo_digests = [parse_reference(d).familiar for d in repo_digests]
    # Docker keeps a top-level comment; OCI configs only have history entries, so fall
    # back to the newest entry that made a layer (a commit's message, not a CMD change).
    layer_entries = [h for h in config.get("history") or [] if not h.get("empty_layer")]
    newest = layer_entries[-1] if layer_entries else {}
    comment = config.get("comment")
    if comment is None:
        comment = newest.get("comment", "")
    author = config.get("author")
    if author is None:
        author = newest.get("author", "")
    return {
        "Id": image.id,
        "RepoTags": list(image.repo_tags),
        "RepoDigests": repo_digests,
        "Parent": config.get("parent", ""),
        "Comment": comment,
        "Created": config.get("created") or ZERO_TIME,
        "DockerVersion": config.get("docker_version", ""),
        "Author": author,
        "Config": {**_DOCKER_CONFIG_DEFAULTS, **(config.get("config") or {})},
        "Architecture": config.get("architecture", ""),
        **({"Variant": config["variant"]} if config.get("variant") else {}),
        "Os": config.get("os", ""),
        "Size": row["size"] if row else 0,
        "GraphDriver": {"Name": "layerbox", "Data": {
            "LowerDir": ":".join(str(p) for p in store.layer_paths(image))}},
        "RootFS": {"Type": "layers", "Layers": [layer.diff_id for layer in image.layers]},
        "Metadata": {"LastTagTime": last_tag or ZERO_TIME},
    }
