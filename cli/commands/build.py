"""``layerbox build``: build an image from a Dockerfile (Docker's classic builder output)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cli.errors import UserError

#: BuildKit's entitlements that RUN flags can ask for; network.host needs none here,
#: since RUN has the host's network stack by default.
ENTITLEMENTS = {"security.insecure", "network.host"}


def register(subparsers) -> None:
    from cli.commands.pull import add_registry_options
    p = subparsers.add_parser("build", help="Build an image from a Dockerfile",
                              description="Build an image from a Dockerfile")
    p.add_argument("-t", "--tag", action="append", default=[], metavar="NAME[:TAG]")
    p.add_argument("-f", "--file", default=None, metavar="FILE",
                   help="name of the Dockerfile (default: PATH/Dockerfile; - for stdin)")
    p.add_argument("--build-arg", action="append", default=[], metavar="K=V")
    p.add_argument("--no-cache", action="store_true", help="do not use cache")
    p.add_argument("--target", default=None, metavar="STAGE")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    p.add_argument("--label", action="append", default=[], metavar="K=V")
    p.add_argument("--network", default="default", choices=["default", "host", "none"],
                   help="RUN's network: default (outbound access, the host's stack) or none")
    p.add_argument("--allow", action="append", default=[], choices=sorted(ENTITLEMENTS),
                   help="extra privileged entitlement: security.insecure (RUN --security=insecure)")
    p.add_argument("--pull", action="store_true",
                   help="always attempt to pull a newer version of the FROM images")
    add_registry_options(p)
    p.add_argument("--progress", default="auto", choices=["plain", "auto", "tty"],
                   help="auto: a live view on a terminal, else plain (the classic step lines)")
    p.add_argument("path", metavar="PATH|-")
    p.set_defaults(func=run)


def _pairs(items: list[str], *, from_env: bool) -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            if not from_env:
                value = ""
            elif key in os.environ:
                value = os.environ[key]
            else:
                continue   # docker: --build-arg NAME without a value takes it from the env
        out[key] = value
    return out


def _base_fetcher(args):
    from cli.commands.pull import ensure_image
    policy = "always" if args.pull else "missing"
    return lambda store, name, out: ensure_image(store, name, policy, args, out,
                                                say_missing=False)


def run(args) -> int:
    from cli.build.builder import BuildOptions, run_build
    from cli.store import Store
    empty_context = None
    if args.path == "-":
        if args.file == "-":
            raise UserError("cannot read both the Dockerfile and the context from stdin")
        text, name = sys.stdin.read(), "Dockerfile"
        import tempfile
        context = empty_context = Path(tempfile.mkdtemp(prefix="layerbox-empty-context-"))
    else:
        context = Path(args.path).resolve()
        if not context.is_dir():
            raise UserError(f'unable to prepare context: path "{args.path}" not found')
        if args.file == "-":
            text, name = sys.stdin.read(), "Dockerfile"
        else:
            path = Path(args.file) if args.file else context / "Dockerfile"
            if args.file and not path.is_absolute() and not path.exists():
                path = context / args.file
            try:
                text = path.read_text(encoding="utf-8", errors="surrogateescape")
            except OSError as exc:
                raise UserError(f"unable to prepare context: unable to evaluate symlinks in "
                                f"Dockerfile path: lstat {path}: "
                                f"{exc.strerror.lower() if exc.strerror else exc}") from None
            name = str(args.file or "Dockerfile")
    for ref in args.tag:
        from cli.reference import parse_tagged
        parse_tagged(ref)   # a bad tag is refused before anything is built
    opts = BuildOptions(context=context, dockerfile_text=text, dockerfile_name=name,
                        tags=list(args.tag), build_args=_pairs(args.build_arg, from_env=True),
                        no_cache=args.no_cache, target=args.target,
                        labels=_pairs(args.label, from_env=False),
                        network="none" if args.network == "none" else "host",
                        allow=frozenset(args.allow), quiet=args.quiet,
                        fetch_base=_base_fetcher(args))

    live = None
    if not args.quiet and (args.progress == "tty" or
                           (args.progress == "auto" and sys.stdout.isatty())):
        from cli.build.progress import LiveView
        sys.stdout.flush()
        live = LiveView(sys.stdout.fileno())
        opts.output_fd = live.start()

    def write(text: str) -> None:
        if live is not None:
            live.feed(text)
            return
        sys.stdout.write(text)
        sys.stdout.flush()

    ok = False
    try:
        with Store.open(args.root) as store:
            image = run_build(store, opts, write)
        ok = True
    finally:
        if live is not None:
            live.close(ok)
        if empty_context is not None:
            import shutil
            shutil.rmtree(empty_context, ignore_errors=True)
    if args.quiet:
        print(image.id)
    return 0
