"""``layerbox system check|df``: store maintenance."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("system", help="Manage the store", description="Manage the store")
    group = p.add_subparsers(dest="system_command", metavar="COMMAND")
    check = group.add_parser("check", help="Verify blobs against digests and the database "
                                           "against the files")
    check.set_defaults(func=run_check)
    df = group.add_parser("df", help="Show disk usage")
    df.set_defaults(func=run_df)
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])


def run_check(args) -> int:
    from cli.store import open_store
    from cli.store.check import check_store

    with open_store(args) as store:
        problems = check_store(store)
    for line in problems:
        print(line)
    return 1 if problems else 0


def run_df(args) -> int:
    from cli.format import human_size, print_table
    from cli.store import open_store

    with open_store(args) as store, store.reading() as conn:
        images = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        active = conn.execute("SELECT COUNT(DISTINCT image_id) FROM containers").fetchone()[0]
        size = conn.execute("SELECT COALESCE(SUM(size), 0) FROM layers").fetchone()[0]
        unused = conn.execute(
            "SELECT COALESCE(SUM(size), 0) FROM layers WHERE chain_id NOT IN ("
            "SELECT il.chain_id FROM image_layers il JOIN containers c "
            "ON c.image_id = il.image_id)").fetchone()[0]
        containers = conn.execute("SELECT COUNT(*) FROM containers").fetchone()[0]
    pct = f" ({100 * unused // size}%)" if size else ""
    print_table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
                [["Images", images, active, human_size(size), human_size(unused) + pct],
                 ["Containers", containers, containers, "N/A", "N/A"]])
    return 0
