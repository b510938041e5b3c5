"""layerbox build end to end: real CLI, real store, real runc containers for RUN."""

from __future__ import annotations

import functools
import http.server
import lzma
import threading

from tests.support.images import layerbox


def _ctx(tmp_path, files: dict[str, str]):
    ctx = tmp_path / "ctx"
    ctx.mkdir(parents=True)
    for name, text in files.items():
        path = ctx / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return ctx


def test_hello_cmd_runs_and_history_lists_every_step(busybox_root, tmp_path):
    ctx = _ctx(tmp_path, {"Dockerfile": 'FROM busybox\nCMD ["echo", "hello"]\n'})
    out = layerbox(busybox_root, "build", "-t", "hello", str(ctx)).stdout
    assert "Step 1/2 : FROM busybox" in out and "Step 2/2 : CMD" in out
    assert "Successfully tagged hello:latest" in out
    assert layerbox(busybox_root, "run", "--rm", "hello").stdout == "hello\n"
    hist = layerbox(busybox_root, "history", "hello").stdout
    assert 'CMD ["echo" "hello"]' in hist


def test_app_layout_dockerignore_cache_and_precise_invalidation(busybox_root, tmp_path):
    ctx = _ctx(tmp_path, {
        "Dockerfile": "FROM busybox\nWORKDIR /app\nCOPY package.json .\nRUN cat package.json\n"
                      "COPY . .\nRUN ls /app > /listing\nCMD [\"cat\", \"/listing\"]\n",
        "package.json": "{}\n", "server.js": "x\n", "node_modules/junk": "j\n",
        ".dockerignore": "node_modules\n"})
    first = layerbox(busybox_root, "build", "-t", "app", str(ctx)).stdout
    assert first.count("Running in") == 2 and "Using cache" not in first
    listing = layerbox(busybox_root, "run", "--rm", "app").stdout.split()
    assert "server.js" in listing and "node_modules" not in listing
    again = layerbox(busybox_root, "build", "-t", "app", str(ctx)).stdout
    assert "Running in" not in again and again.count("Using cache") == 6
    (ctx / "server.js").write_text("changed\n")
    third = layerbox(busybox_root, "build", "-t", "app", str(ctx)).stdout
    assert third.count("Using cache") == 3 and third.count("Running in") == 1
    hist = layerbox(busybox_root, "history", "app").stdout
    assert "WORKDIR /app" in hist and "COPY" in hist


def test_genesis_from_scratch_add_tar_xz(busybox_root, busybox_tar, tmp_path):
    ctx = _ctx(tmp_path, {"Dockerfile": 'FROM scratch\nADD busybox.tar.xz /\nCMD ["sh"]\n'})
    (ctx / "busybox.tar.xz").write_bytes(lzma.compress(busybox_tar.read_bytes()))
    layerbox(busybox_root, "build", "-t", "genesis", str(ctx))
    out = layerbox(busybox_root, "run", "--rm", "genesis", "sh", "-c", "echo ok").stdout
    assert out == "ok\n"


def test_multistage_copy_from_and_onbuild(busybox_root, tmp_path):
    ctx = _ctx(tmp_path, {
        "Dockerfile": "FROM busybox AS builder\nRUN echo built > /artifact\n"
                      "FROM busybox\nCOPY --from=builder /artifact /out/\n"
                      "ONBUILD RUN echo triggered > /trig\n"})
    layerbox(busybox_root, "build", "-t", "base", str(ctx))
    assert layerbox(busybox_root, "run", "--rm", "base", "cat", "/out/artifact").stdout == "built\n"
    child = _ctx(tmp_path / "c", {"Dockerfile": "FROM base\n"})
    out = layerbox(busybox_root, "build", "-t", "child", str(child)).stdout
    assert "Executing 1 build trigger" in out
    assert layerbox(busybox_root, "run", "--rm", "child", "cat", "/trig").stdout == "triggered\n"


def test_add_url(busybox_root, tmp_path):
    served = tmp_path / "www"
    served.mkdir()
    (served / "data.txt").write_text("from http\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/data.txt"
        ctx = _ctx(tmp_path, {"Dockerfile": f"FROM busybox\nADD {url} /dl/\n"})
        layerbox(busybox_root, "build", "-t", "dl", str(ctx))
    finally:
        server.shutdown()
    out = layerbox(busybox_root, "run", "--rm", "dl", "cat", "/dl/data.txt").stdout
    assert out == "from http\n"


def test_failing_run_and_bad_dockerfile(busybox_root, tmp_path):
    before = layerbox(busybox_root, "images", "-a", "-q").stdout
    ctx = _ctx(tmp_path, {"Dockerfile": "FROM busybox\nFROBNICATE x\n"})
    bad = layerbox(busybox_root, "build", str(ctx), check=False)
    assert bad.returncode != 0 and "Dockerfile:2: unknown instruction" in bad.stderr and len(bad.stderr.splitlines()) == 1
    assert layerbox(busybox_root, "images", "-a", "-q").stdout == before
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN false\n")
    failed = layerbox(busybox_root, "build", str(ctx), check=False)
    assert failed.returncode != 0
    assert "The command '/bin/sh -c false' returned a non-zero code: 1" in failed.stderr
    assert layerbox(busybox_root, "ps", "-a", "-q").stdout == ""


def test_metadata_args_chown_chmod_wildcards_target(busybox_root, tmp_path):
    ctx = _ctx(tmp_path, {
        "a.txt": "a\n", "b.txt": "b\n", "one.conf": "c\n",
        "Dockerfile": "ARG BASE=busybox\nFROM $BASE AS first\nMAINTAINER me\nARG V=dflt\n"
                      "RUN true\nRUN echo \"v=$V\" > /v\nWORKDIR /new/dir\n"
                      "COPY --chown=nobody:nobody --chmod=600 *.txt /dst/\n"
                      "COPY one.conf /etc/renamed.conf\nCOPY one.conf /tmp\nUSER nobody\n"
                      "EXPOSE 80 53/udp\nSTOPSIGNAL SIGTERM\nENTRYPOINT [\"sh\", \"-c\"]\n"
                      "FROM busybox\nRUN exit 3\n"})
    out = layerbox(busybox_root, "build", "--target", "first", "--build-arg", "V=given",
                   "--label", "k=v", "-t", "edge", str(ctx)).stdout
    assert "Step 14/14 : ENTRYPOINT" in out and "exit 3" not in out
    shown = layerbox(busybox_root, "run", "--rm", "edge",
                     "ls -n /dst/a.txt /dst/b.txt /tmp/one.conf /etc/renamed.conf; cat /v; pwd; "
                     "id -u").stdout.splitlines()
    assert shown[0].startswith("-rw-------") and " 65534 " in shown[0]
    assert shown[2].startswith("-rw-r--r--") and "/etc/renamed.conf" in shown[2]
    assert shown[4:] == ["v=given", "/new/dir", "65534"]
    hist = layerbox(busybox_root, "history", "--no-trunc", "edge").stdout
    assert "|1 V=given /bin/sh -c true" in hist and "LABEL k=v" in hist
    assert "MAINTAINER me" in hist and "WORKDIR /new/dir" in hist


def test_heredocs_run_script_shebang_stdin_and_copy(busybox_root, tmp_path):
    dockerfile = (
        "FROM busybox\n"
        "WORKDIR /w\n"
        "RUN <<EOF\n"
        "echo script > /w/a\n"
        "echo second >> /w/a\n"
        "EOF\n"
        "RUN <<EOF\n"
        "#!/bin/sh -e\n"
        "echo \"shebang $0\" > /w/b\n"
        "EOF\n"
        "RUN cat <<'EOF' > /w/c\n"
        "literal $HOME\n"
        "EOF\n"
        "RUN <<-EOT sh -c 'cat > /w/d'\n"
        "\ttabbed\n"
        "\tEOT\n"
        "COPY <<EOF /w/e\n"
        "copied\n"
        "EOF\n"
        'CMD ["sh", "-c", "cat /w/a /w/b /w/c /w/d /w/e; ls /dev/pipes 2>&1 | wc -l"]\n')
    ctx = _ctx(tmp_path, {"Dockerfile": dockerfile})
    layerbox(busybox_root, "build", "-t", "heredocs", str(ctx))
    out = layerbox(busybox_root, "run", "--rm", "heredocs").stdout
    assert out.splitlines() == ["script", "second", "shebang /dev/pipes/EOF", "literal $HOME",
                                "tabbed", "copied", "1"]
    again = layerbox(busybox_root, "build", "-t", "heredocs", str(ctx)).stdout
    assert "Running in" not in again


def _build_on_pty(root, *args) -> tuple[int, str]:
    """Run ``layerbox build`` with a real pseudo-terminal as stdout/stderr; all it drew."""
    import os
    import pty
    import shutil
    import struct
    import termios
    exe = shutil.which("layerbox") or os.path.join(os.path.dirname(os.sys.executable),
                                                     "layerbox")
    pid, fd = pty.fork()
    if pid == 0:   # child: the pty is its controlling terminal
        os.execv(exe, [exe, "--root", str(root), "build", *args])
    import fcntl
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    out = b""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:   # EIO: the child closed the terminal
            break
        if not data:
            break
        out += data
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


def test_live_progress_view_on_a_terminal(busybox_root, tmp_path):
    ctx = _ctx(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo first-line; echo second-line\n"
                                        "COPY Dockerfile /x\n"})
    code, drawn = _build_on_pty(busybox_root, "-t", "live", str(ctx))
    assert code == 0, drawn
    assert "Step 1/3" not in drawn                       # not the classic lines
    assert "\x1b[J" in drawn and "[+] Building" in drawn  # redrawn in place
    assert "=> [2/3] RUN echo first-line; echo second-line" in drawn
    assert "FINISHED" in drawn and "Successfully tagged live:latest" in drawn
    code, drawn = _build_on_pty(busybox_root, "-t", "live", str(ctx))
    assert "=> CACHED [2/3] RUN" in drawn and "=> CACHED [3/3] COPY" in drawn
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo shown-on-failure; exit 3\n")
    code, drawn = _build_on_pty(busybox_root, str(ctx))
    assert code != 0
    assert "=> ERROR [2/2] RUN" in drawn and "=> => # shown-on-failure" in drawn
    assert "returned a non-zero code: 3" in drawn
    code, plain = _build_on_pty(busybox_root, "--progress", "plain", str(ctx))
    assert "Step 2/2 : RUN echo shown-on-failure; exit 3" in plain and "\x1b[" not in plain


def test_stdin_dockerfile_quiet_label_and_history_sizes(busybox_root, tmp_path):
    dockerfile = b'FROM busybox\nRUN printf 12345 > /five\nENV A=1\nCMD ["cat", "/five"]\n'
    quiet = layerbox(busybox_root, "build", "-q", "--label", "k=v", "-t", "piped", "-",
                     input=dockerfile)
    image_id = quiet.stdout.strip()
    assert quiet.stdout.count("\n") == 1 and image_id.startswith("sha256:")
    assert layerbox(busybox_root, "run", "--rm", "piped").stdout == "12345"
    assert '"k": "v"' in layerbox(busybox_root, "image", "inspect", "piped").stdout
    rows = layerbox(busybox_root, "history", "--no-trunc", "piped").stdout.splitlines()[1:]
    created = [r for r in rows if "Imported" not in r]
    assert len(created) == 4   # RUN, ENV, CMD, the --label line: every instruction
    assert "printf 12345 > /five" in created[-1] and "5B" in created[-1]
    assert all(" 0B" in r for r in created[:-1])
    ctx = _ctx(tmp_path, {"data.txt": "from the context\n"})
    viaf = layerbox(busybox_root, "build", "-t", "fromf", "-f", "-", str(ctx),
                    input=b'FROM busybox\nCOPY data.txt /\nCMD ["cat", "/data.txt"]\n')
    assert "Successfully tagged fromf:latest" in viaf.stdout
    assert layerbox(busybox_root, "run", "--rm", "fromf").stdout == "from the context\n"
    both = layerbox(busybox_root, "build", "-f", "-", "-", input=b"FROM busybox\n", check=False)
    assert both.returncode != 0 and len(both.stderr.splitlines()) == 1
    script = layerbox(busybox_root, "build", "-", check=False,
                      input=b"FROM busybox\nRUN <<EOF\n#!/bin/sh\nexit 4\nEOF\n")
    assert script.stderr.strip() == \
        "Error: The command '/bin/sh -c <<EOF' returned a non-zero code: 4"


def test_run_network_and_security_flags_change_the_sandbox(busybox_root, tmp_path):
    """RUN --network=none has only a loopback; --security=insecure runs privileged,
    and only with the build's --allow security.insecure (BuildKit's entitlement)."""
    ctx = _ctx(tmp_path, {"Dockerfile":
        "FROM busybox\n"
        "RUN --network=none cat /proc/net/dev > /net-none\n"
        "RUN cat /proc/net/dev > /net-default\n"
        "RUN --security=insecure grep CapEff /proc/self/status > /caps-insecure\n"
        "RUN grep CapEff /proc/self/status > /caps-default\n"})
    refused = layerbox(busybox_root, "build", "-t", "sandbox", str(ctx), check=False)
    assert refused.returncode != 0 and len(refused.stderr.splitlines()) == 1
    assert "Dockerfile:4: RUN --security=insecure needs the entitlement" in refused.stderr
    layerbox(busybox_root, "build", "--allow", "security.insecure", "-t", "sandbox", str(ctx))

    def read(path: str) -> str:
        return layerbox(busybox_root, "run", "--rm", "sandbox", "cat", path).stdout

    interfaces = [line.split(":")[0].strip() for line in read("/net-none").splitlines()[2:]]
    assert interfaces == ["lo"]
    assert len(read("/net-default").splitlines()[2:]) > 1
    insecure, default = read("/caps-insecure").split()[1], read("/caps-default").split()[1]
    assert int(insecure, 16) > int(default, 16) and int(default, 16) == 0xa80425fb


def test_a_build_without_the_network_is_not_a_cache_hit_for_one_with_it(busybox_root, tmp_path):
    ctx = _ctx(tmp_path, {"Dockerfile": "FROM busybox\nRUN cat /proc/net/dev > /net\n"})
    layerbox(busybox_root, "build", "-t", "with-net", str(ctx))
    layerbox(busybox_root, "build", "--network", "none", "-t", "no-net", str(ctx))

    def interfaces(image: str) -> list[str]:
        out = layerbox(busybox_root, "run", "--rm", image, "cat", "/net").stdout
        return [line.split(":")[0].strip() for line in out.splitlines()[2:]]

    assert interfaces("no-net") == ["lo"]
    assert len(interfaces("with-net")) > 1
    layerbox(busybox_root, "build", "--network", "none", "-t", "no-net-2", str(ctx))

    def image_id(name: str) -> str:
        return layerbox(busybox_root, "image", "inspect", "-f", "{{.Id}}", name).stdout

    assert image_id("no-net-2") == image_id("no-net") != image_id("with-net")   # cached
