import pytest

from cli.config_changes import apply_changes
from cli.errors import UserError

BASE = {"architecture": "amd64", "config": {"Env": ["PATH=/bin", "A=1"], "WorkingDir": "/srv"}}

CASES = [
    ('CMD ["sh", "-c", "echo hi"]', "Cmd", ["sh", "-c", "echo hi"]),
    ("CMD echo hi", "Cmd", ["/bin/sh", "-c", "echo hi"]),
    ('ENTRYPOINT ["/bin/busybox"]', "Entrypoint", ["/bin/busybox"]),
    ("ENV A=2 B=\"x y\"", "Env", ["PATH=/bin", "A=2", "B=x y"]),
    ("ENV C hello world", "Env", ["PATH=/bin", "A=1", "C=hello world"]),
    ("EXPOSE 80 53/udp 8000-8001", "ExposedPorts",
     {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}),
    ('LABEL a=b "c d"=e', "Labels", {"a": "b", "c d": "e"}),
    ("ONBUILD RUN make", "OnBuild", ["RUN make"]),
    ("USER nobody", "User", "nobody"),
    ('VOLUME ["/data", "/logs"]', "Volumes", {"/data": {}, "/logs": {}}),
    ("VOLUME /a /b", "Volumes", {"/a": {}, "/b": {}}),
    ("WORKDIR app", "WorkingDir", "/srv/app"),
    ("workdir /abs", "WorkingDir", "/abs"),
]


@pytest.mark.parametrize("instruction, key, expected", CASES)
def test_change(instruction, key, expected):
    result = apply_changes(BASE, [instruction])
    assert result["config"][key] == expected
    assert BASE["config"]["Env"] == ["PATH=/bin", "A=1"]  # input untouched
    assert result["architecture"] == "amd64"


@pytest.mark.parametrize("instruction", ["RUN echo", "FROM x", "COPY a b", "ENV", "USER a b",
                                         "EXPOSE http", "ONBUILD FROM x", "ENV =x"])
def test_refused(instruction):
    with pytest.raises(UserError):
        apply_changes(BASE, [instruction])


def test_config_missing():
    assert apply_changes({"config": None}, ["USER x"])["config"] == {"User": "x"}
