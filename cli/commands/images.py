"""``layerbox images [-a] [-q] [REPOSITORY[:TAG]]``: docker images (also ``image ls``)."""

from __future__ import annotations

import fnmatch


def add_arguments(p) -> None:
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("-a", "--all", action="store_true", help="show all images")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    p.add_argument("--digests", action="store_true", help="show digests")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("--format", default=None, help="json, 'table TEMPLATE' or a Go template")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="filter output (dangling=true|false, reference=PATTERN)")
    p.set_defaults(func=run)


def register(subparsers) -> None:
    add_arguments(subparsers.add_parser("images", help="List images",
                                        description="List images"))


def _matches(pattern: str, repo: str, tag: str) -> bool:
    if "*" not in pattern and "?" not in pattern and "[" not in pattern:
        from cli.reference import try_parse
        ref = try_parse(pattern)  # "docker.io/library/busybox" means "busybox"
        if ref is not None and not ref.digest:
            pattern = ref.familiar_name + (f":{ref.tag}" if ref.tag else "")
    if ":" in pattern.rsplit("/", 1)[-1]:
        pat_repo, pat_tag = pattern.rsplit(":", 1)
    else:
        pat_repo, pat_tag = pattern, "*"
    return fnmatch.fnmatchcase(repo, pat_repo) and fnmatch.fnmatchcase(tag, pat_tag)


def run(args) -> int:
    from cli.errors import UserError
    from cli.format import ago, docker_time, human_size, print_formatted, print_table
    from cli.store.query import image_summaries, split_name

    patterns = [args.reference] if args.reference else []
    dangling = None
    for f in args.filter:
        key, _, value = f.partition("=")
        if key == "reference":
            patterns.append(value)
        elif key == "dangling":
            dangling = value.lower() in ("true", "1")
        else:
            raise UserError(f"invalid filter '{key}'")
    summaries = image_summaries(args.root)
    items = []
    for s in summaries:
        digest = s.manifest_digest if s.repo_digests else "<none>"
        names = [split_name(t) for t in s.tags] or [("<none>", "<none>")]
        if dangling is not None and dangling != (not s.tags):
            continue
        for repo, tag in names:
            if patterns and not any(_matches(p, repo, tag) for p in patterns):
                continue
            items.append({
                "Containers": str(s.containers) if s.containers else "N/A",
                "CreatedAt": docker_time(s.created), "CreatedSince": ago(s.created),
                "Digest": digest,
                "ID": s.id if args.no_trunc else s.id[7:19],
                "Repository": repo, "SharedSize": "N/A", "Size": human_size(s.size),
                "Tag": tag, "UniqueSize": "N/A", "VirtualSize": human_size(s.size)})
    if args.quiet:
        seen = []
        for item in items:
            if item["ID"] not in seen:
                seen.append(item["ID"])
        print("\n".join(seen)) if seen else None
        return 0
    if args.format:
        print_formatted(args.format, items)
        return 0
    headers = ["REPOSITORY", "TAG"] + (["DIGEST"] if args.digests else []) + \
        ["IMAGE ID", "CREATED", "SIZE"]
    rows = [[i["Repository"], i["Tag"]] + ([i["Digest"]] if args.digests else []) +
            [i["ID"], i["CreatedSince"], i["Size"]] for i in items]
    print_table(headers, rows)
    return 0
