import pytest

from cli.errors import UserError
from cli.reference import parse_reference, parse_tagged

VALID = [
    # text, full string, familiar
    ("busybox", "docker.io/library/busybox", "busybox"),
    ("busybox:latest", "docker.io/library/busybox:latest", "busybox:latest"),
    ("me/hello:v1", "docker.io/me/hello:v1", "me/hello:v1"),
    ("docker.io/library/busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("index.docker.io/me/x", "docker.io/me/x", "me/x"),
    ("127.0.0.1:5000/x", "127.0.0.1:5000/x", "127.0.0.1:5000/x"),
    ("localhost/a/b:t", "localhost/a/b:t", "localhost/a/b:t"),
    ("localhost:5000/a:1.0-rc_2", "localhost:5000/a:1.0-rc_2", "localhost:5000/a:1.0-rc_2"),
    ("quay.io/org/app", "quay.io/org/app", "quay.io/org/app"),
    ("me/a.b-c__d", "docker.io/me/a.b-c__d", "me/a.b-c__d"),
    ("x@sha256:" + "a" * 64, "docker.io/library/x@sha256:" + "a" * 64, "x@sha256:" + "a" * 64),
    ("x:t@sha256:" + "b" * 64, "docker.io/library/x:t@sha256:" + "b" * 64,
     "x:t@sha256:" + "b" * 64),
]


@pytest.mark.parametrize("text, full, familiar", VALID)
def test_valid(text, full, familiar):
    ref = parse_reference(text)
    assert str(ref) == full
    assert ref.familiar == familiar


@pytest.mark.parametrize("text, message", [
    ("", "invalid reference format"),
    ("Busybox", "repository name (library/Busybox) must be lowercase"),
    ("me/Hello", "must be lowercase"),
    ("a:b:c", "invalid reference format: a:b:c"),
    ("x@sha256:abc", "invalid reference format"),
    ("x:-bad", "invalid reference format"),
    ("/x", "invalid reference format"),
    ("x//y", "invalid reference format"),
    ("x:" + "t" * 200, "invalid reference format"),
    ("a" * 300, "must not be more than 255"),
])
def test_invalid(text, message):
    with pytest.raises(UserError) as info:
        parse_reference(text)
    assert str(info.value).startswith("invalid reference format")
    assert message in str(info.value)


def test_default_tag_and_tagged():
    assert str(parse_reference("busybox").with_default_tag()) == "docker.io/library/busybox:latest"
    assert parse_tagged("me/x").familiar == "me/x:latest"
    with pytest.raises(UserError):
        parse_tagged("x@sha256:" + "a" * 64)
    with pytest.raises(UserError, match="64-byte hexadecimal"):
        parse_tagged("a" * 64)


def test_frozen():
    ref = parse_reference("busybox")
    with pytest.raises(AttributeError):
        ref.tag = "x"
