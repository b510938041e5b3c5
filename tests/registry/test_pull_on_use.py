"""run, create and build fetch a missing image from its registry first, as Docker does
(``--pull missing`` is the default; ``always`` and ``never`` as in ``docker run --pull``)."""

from __future__ import annotations

from tests.support.images import layerbox


def _pushed(registry, root, repo: str) -> str:
    name = f"{registry.host}/{repo}:1"
    layerbox(root, "tag", "busybox", name)
    layerbox(root, "push", name)
    layerbox(root, "rmi", name)
    return name


def test_run_pulls_a_missing_image_and_keeps_stdout_for_the_container(registry, busybox_root):
    name = _pushed(registry, busybox_root, "use/run")
    never = layerbox(busybox_root, "run", "--rm", "--pull", "never", name, "true", check=False)
    assert never.returncode != 0 and "No such image" in never.stderr
    assert len(never.stderr.splitlines()) == 1
    first = layerbox(busybox_root, "run", "--rm", name, "echo", "hi")
    assert first.stdout == "hi\n"
    assert f"Unable to find image '{name}' locally" in first.stderr
    assert f"Status: Downloaded newer image for {name}" in first.stderr
    again = layerbox(busybox_root, "run", "--rm", name, "echo", "hi")
    assert again.stdout == "hi\n" and again.stderr == ""
    always = layerbox(busybox_root, "create", "--pull", "always", name)
    assert f"Status: Image is up to date for {name}" in always.stderr
    assert "Unable to find image" not in always.stderr
    assert always.stdout.strip() in layerbox(busybox_root, "ps", "-a", "-q", "--no-trunc").stdout


def test_build_pulls_a_missing_from_image(registry, busybox_root, tmp_path):
    name = _pushed(registry, busybox_root, "use/base")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {name}\nRUN echo built > /marker\n")
    out = layerbox(busybox_root, "build", "-t", "on-pulled", str(ctx)).stdout
    assert f"Step 1/2 : FROM {name}" in out and f"Downloaded newer image for {name}" in out
    assert "Unable to find image" not in out
    assert layerbox(busybox_root, "run", "--rm", "on-pulled", "cat", "/marker").stdout == "built\n"
    cached = layerbox(busybox_root, "build", "--pull", "-t", "on-pulled", str(ctx)).stdout
    assert f"Image is up to date for {name}" in cached and "Using cache" in cached


def test_a_missing_image_on_an_unreachable_registry_is_one_line(busybox_root):
    out = layerbox(busybox_root, "run", "--rm", "127.0.0.1:9/none/such", "true", check=False)
    assert out.returncode != 0
    lines = out.stderr.splitlines()
    assert lines[0] == "Unable to find image '127.0.0.1:9/none/such:latest' locally"
    assert len(lines) == 2 and lines[1].startswith("Error:") and "Traceback" not in out.stderr
