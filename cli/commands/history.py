"""``layerbox history IMAGE``: docker history (newest first, ``<missing>`` for ancestors)."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("-H", "--human", type=_bool, default=True, nargs="?", const=True,
                   help="print sizes and dates in human readable format (default true)")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    p.add_argument("--format", default=None, help="json, 'table TEMPLATE' or a Go template")
    p.set_defaults(func=run)


def register(subparsers) -> None:
    add_arguments(subparsers.add_parser("history", help="Show the history of an image",
                                        description="Show the history of an image"))


def _bool(text: str) -> bool:
    return text.lower() not in ("false", "0", "no")


def _ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def history_rows(store, image) -> list[dict]:
    """One dict per history entry, newest first; layer sizes matched to non-empty entries."""
    config = image.config
    sizes = [r["size"] for r in store.conn.execute(
        "SELECT l.size FROM image_layers il JOIN layers l ON l.chain_id = il.chain_id "
        "WHERE il.image_id=? ORDER BY il.position", (image.id,))]
    history = config.get("history") or [{"created": config.get("created")} for _ in sizes]
    rows, layer_index = [], 0
    for entry in history:
        size = 0
        if not entry.get("empty_layer"):
            size = sizes[layer_index] if layer_index < len(sizes) else 0
            layer_index += 1
        rows.append({"id": "<missing>", "created": entry.get("created"),
                     "created_by": entry.get("created_by", ""), "size": size,
                     "comment": entry.get("comment", "")})
    rows.reverse()
    if rows:
        rows[0]["id"] = image.id
    return rows


def run(args) -> int:
    from cli.format import ago, human_size, print_formatted, print_table
    from cli.store import open_store

    with open_store(args) as store:
        image = store.resolve_image(args.image)
        rows = history_rows(store, image)
    if args.quiet:
        for row in rows:
            print(row["id"] if args.no_trunc or row["id"] == "<missing>" else row["id"][7:19])
        return 0
    items = []
    for row in rows:
        created_by = row["created_by"].replace("\t", " ")
        if not args.no_trunc:
            created_by = _ellipsis(created_by, 45)
        items.append({
            "ID": row["id"] if args.no_trunc or row["id"] == "<missing>" else row["id"][7:19],
            "CreatedSince": ago(row["created"]) if args.human else (row["created"] or ""),
            "CreatedAt": row["created"] or "", "CreatedBy": created_by,
            "Size": human_size(row["size"]) if args.human else str(row["size"]),
            "Comment": row["comment"]})
    if args.format:
        print_formatted(args.format, items)
        return 0
    print_table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
                [[i["ID"], i["CreatedSince"], i["CreatedBy"], i["Size"], i["Comment"]]
                 for i in items])
    return 0
