"""``layerbox system check``: every blob against its digest, the database against the files.

Returns problems as one-line strings; an empty list means the store is consistent.
"""

from __future__ import annotations

import json
import os

from cli.store.blobs import file_digest
from cli.store.gc import lease_held
from cli.store.layout import ref_name
from cli.store.model import REF_NAME_ANNOTATION, chain_id, hex_of
from cli.store.store import Store


def check_store(store: Store) -> list[str]:
    problems: list[str] = []
    with store.reading() as conn:
        referenced: set[str] = set()
        for image in conn.execute("SELECT * FROM images").fetchall():
            problems += _check_image(store, conn, image, referenced)
        used = {r[0] for r in conn.execute("SELECT DISTINCT chain_id FROM image_layers")}
        mounted = {r[0] for r in conn.execute(
            "SELECT DISTINCT il.chain_id FROM image_layers il JOIN containers c "
            "ON c.image_id = il.image_id")}
        for row in conn.execute("SELECT chain_id FROM layers"):
            # A layer not unpacked yet (commit, build) is made from its blob on first use,
            # fine while an image names it (its blob is checked below) or a writer holds
            # it; but creating a container made its dirs, so there one missing is damage.
            if store.layer_path(row[0]).is_dir():
                continue
            if row[0] in mounted:
                problems.append(f"layer {row[0]}: directory {store.layer_path(row[0])} is "
                                "missing (a container uses it)")
            elif row[0] not in used and not lease_held(conn, "layer", row[0]):
                problems.append(f"layer {row[0]}: not unpacked, and no image has a blob of it")
        known = {hex_of(r[0]) for r in conn.execute("SELECT chain_id FROM layers")}
        for entry in sorted(os.listdir(store.layers_dir)):
            if entry not in known and not lease_held(conn, "layer", "sha256:" + entry):
                problems.append(f"layer directory {store.layers_dir / entry} is not in the database")
        for row in conn.execute("SELECT t.name FROM tags t LEFT JOIN images i ON i.id = t.image_id "
                                "WHERE i.id IS NULL"):
            problems.append(f"tag {row[0]}: points to a missing image")
        problems += _check_blobs(store, conn, referenced)
        problems += _check_index(store, conn)
    return problems


def _check_image(store, conn, image, referenced: set[str]) -> list[str]:
    image_id = image["id"]
    problems = []
    referenced.update({image_id, image["manifest_digest"]})
    try:
        manifest = json.loads(store.blobs.path(image["manifest_digest"]).read_bytes())
        config = json.loads(store.blobs.path(image_id).read_bytes())
    except (OSError, ValueError) as exc:
        return [f"image {image_id}: cannot read manifest or config: {exc}"]
    if manifest.get("config", {}).get("digest") != image_id:
        problems.append(f"image {image_id}: manifest {image['manifest_digest']} names config "
                        f"{manifest.get('config', {}).get('digest')}")
    rows = conn.execute("SELECT il.chain_id, il.digest, l.diff_id FROM image_layers il "
                        "LEFT JOIN layers l ON l.chain_id = il.chain_id WHERE il.image_id=? "
                        "ORDER BY il.position", (image_id,)).fetchall()
    referenced.update(r["digest"] for r in rows)
    if [d.get("digest") for d in manifest.get("layers", [])] != [r["digest"] for r in rows]:
        problems.append(f"image {image_id}: manifest layers differ from the database")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if diff_ids != [r["diff_id"] for r in rows]:
        problems.append(f"image {image_id}: config diff_ids differ from its layers")
    parent = None
    for row in rows:
        if row["diff_id"] is None:
            problems.append(f"image {image_id}: layer {row['chain_id']} is not in the database")
            continue
        expected = chain_id(parent, row["diff_id"])
        if expected != row["chain_id"]:
            problems.append(f"image {image_id}: layer {row['chain_id']} should be {expected}")
        parent = row["chain_id"]
    return problems


def _check_blobs(store, conn, referenced: set[str]) -> list[str]:
    problems = []
    present = set()
    for name in sorted(os.listdir(store.blobs.dir)):
        digest = "sha256:" + name
        present.add(digest)
        path = store.blobs.dir / name
        actual = file_digest(path)
        if actual != digest:
            problems.append(f"blob {digest}: content hashes to {actual}")
        elif digest not in referenced and not lease_held(conn, "blob", digest):
            problems.append(f"blob {digest}: not used by any image")
    for digest in sorted(referenced - present):
        problems.append(f"blob {digest}: missing")
    return problems


def _check_index(store, conn) -> list[str]:
    try:
        index = json.loads((store.oci_dir / "index.json").read_bytes())
    except (OSError, ValueError) as exc:
        return [f"index.json: unreadable: {exc}"]
    listed = {(m.get("annotations") or {}).get(REF_NAME_ANNOTATION): m.get("digest")
              for m in index.get("manifests", [])
              if (m.get("annotations") or {}).get(REF_NAME_ANNOTATION)}
    expected = {ref_name(r[0]): r[1] for r in conn.execute(
        "SELECT t.name, i.manifest_digest FROM tags t JOIN images i ON i.id = t.image_id")}
    if listed != expected:
        return ["index.json: tags differ from the database"]
    return []
