"""``rmi`` and ``image prune``: untag and delete images with Docker's conflict rules."""

from __future__ import annotations


from cli.reference import try_parse
from cli.store.errors import ImageConflict
from cli.store.gc import Removal, delete_image_rows, empty_trash
from cli.store.layout import ref_name
from cli.store.model import short_id
from cli.store.store import Store


def _containers_using(conn, image_id: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT id FROM containers WHERE image_id=? ORDER BY id",
                                       (image_id,))]


def remove_image(store: Store, name: str, *, force: bool = False) -> Removal:
    """Docker's ``rmi NAME``: untag NAME; delete the image when no tag and no container is left.

    By tag with other tags left: only untag. By id with several tags: a conflict unless
    FORCE. Used by a container: a conflict unless FORCE; forced, the image is untagged
    but kept (its layers are the container's lower dirs) until the container is removed.
    """
    report, trash = Removal(), []
    with store.transaction() as conn:
        image_id = store.resolve_image_id(name)
        tags = [r[0] for r in conn.execute("SELECT name FROM tags WHERE image_id=? ORDER BY name",
                                           (image_id,))]
        ref = try_parse(name)
        by_tag = None
        if ref is not None and not ref.digest and str(ref.with_default_tag()) in tags:
            by_tag = str(ref.with_default_tag())
        users = _containers_using(conn, image_id)
        if by_tag and len(tags) > 1:
            untag = [by_tag]
        else:
            if not force and len(tags) > 1:
                raise ImageConflict(f"conflict: unable to delete {short_id(image_id)} (must be "
                                    "forced) - image is referenced in multiple repositories")
            if users and not force:
                if by_tag:
                    raise ImageConflict(
                        f"conflict: unable to remove repository reference \"{name}\" (must "
                        f"force) - container {users[0][:12]} is using its referenced image "
                        f"{short_id(image_id)}")
                raise ImageConflict(f"conflict: unable to delete {short_id(image_id)} (must be "
                                    f"forced) - image is being used by stopped container "
                                    f"{users[0][:12]}")
            untag = tags
        for tag in untag:
            conn.execute("DELETE FROM tags WHERE name=?", (tag,))
            report.untagged.append(ref_name(tag))
        remaining = conn.execute("SELECT 1 FROM tags WHERE image_id=? LIMIT 1",
                                 (image_id,)).fetchone()
        if not remaining and not users:
            delete_image_rows(store, image_id, trash, report)
        store.publish_index()
    empty_trash(trash)
    return report


def prune_images(store: Store, *, all_images: bool = False) -> Removal:
    """Remove dangling images (untagged), or with ALL_IMAGES every image no container uses."""
    report, trash = Removal(), []
    with store.transaction() as conn:
        used = {r[0] for r in conn.execute("SELECT DISTINCT image_id FROM containers")}
        for (image_id,) in conn.execute("SELECT id FROM images ORDER BY added").fetchall():
            if image_id in used:
                continue
            tags = [r[0] for r in conn.execute("SELECT name FROM tags WHERE image_id=? "
                                               "ORDER BY name", (image_id,))]
            if tags and not all_images:
                continue
            for tag in tags:
                report.untagged.append(ref_name(tag))
            delete_image_rows(store, image_id, trash, report)
        store.publish_index()
    empty_trash(trash)
    return report
