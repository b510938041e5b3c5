"""Stage 1 (lines → nodes) and a few typed-instruction properties not visible in goldens."""

from __future__ import annotations

import dataclasses

import pytest

from cli.build import DockerfileError, parse_dockerfile
from cli.build import instructions as ins
from cli.build.parser import parse, parse_heredoc_word


def test_nodes_carry_start_and_end_lines() -> None:
    nodes = parse("# c\nFROM a\n\nRUN x \\\n  y \\\n  z\nRUN <<EOF\nbody\nEOF\nCMD done\n").nodes
    assert [(n.keyword, n.start_line, n.end_line) for n in nodes] == [
        ("from", 2, 2), ("run", 4, 6), ("run", 7, 9), ("cmd", 10, 10)]


@pytest.mark.parametrize("word,name,expand,chomp,fd", [
    ("<<EOF", "EOF", True, False, 0), ("<<-EOF", "EOF", True, True, 0),
    ('<<"EOF"', "EOF", False, False, 0), ("<<'EOF'", "EOF", False, False, 0),
    ("<<-'E O F'", "E O F", False, True, 0), ("3<<EOF", "EOF", True, False, 3),
    ('<<E"O"F', "EOF", False, False, 0),
])
def test_heredoc_words(word: str, name: str, expand: bool, chomp: bool, fd: int) -> None:
    doc = parse_heredoc_word(word)
    assert doc is not None
    assert (doc.name, doc.expand, doc.chomp, doc.fd) == (name, expand, chomp, fd)


@pytest.mark.parametrize("word", ["<<", "<<<EOF", "x<<EOF", "<<one two", "EOF"])
def test_not_heredoc_words(word: str) -> None:
    assert parse_heredoc_word(word) is None


def test_heredoc_inside_quotes_is_not_a_heredoc() -> None:
    (node,) = parse('RUN echo "<<EOF"\n').nodes[:1]
    assert node.heredocs == ()


def test_onbuild_trigger_keeps_its_heredoc() -> None:
    df = parse_dockerfile("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n")
    onbuild = df.stages[0].instructions[0]
    assert isinstance(onbuild, ins.Onbuild)
    assert onbuild.expression == "RUN <<EOF\necho hi\nEOF"
    assert isinstance(onbuild.trigger, ins.Run)
    assert onbuild.trigger.heredocs[0].content == "echo hi\n"
    assert (onbuild.line, onbuild.end_line) == (2, 4)


def test_run_script_is_the_single_heredoc() -> None:
    df = parse_dockerfile("FROM a\nRUN <<EOF\necho hi\nEOF\nRUN <<EOF cat\nx\nEOF\n")
    first, second = df.stages[0].instructions
    assert isinstance(first, ins.Run) and first.script is not None
    assert isinstance(second, ins.Run) and second.script is None


def test_directives_only_at_the_top() -> None:
    result = parse("#  Syntax = docker/dockerfile:1 \nFROM a\n# escape=`\nRUN a \\\n b\n")
    assert result.directives == {"syntax": "docker/dockerfile:1"}
    assert result.escape == "\\"
    assert result.nodes[1].original == "RUN a  b"


def test_unknown_directive_ends_directives() -> None:
    result = parse("# foo=bar\n# escape=`\nFROM a\n")
    assert result.directives == {}


def test_bom_before_directive() -> None:
    assert parse("\ufeff# escape=`\nFROM a\n").escape == "`"


def test_comments_before_an_instruction_are_kept_on_its_node() -> None:
    nodes = parse("FROM a\n# first\n# second\nARG X\n").nodes
    assert nodes[1].comments == ("first", "second")


def test_flags_are_split_from_arguments() -> None:
    (_, node) = parse('FROM a\nCOPY --from=b --chown="1:1" -- --weird /d\n').nodes
    assert node.flags == ("--from=b", "--chown=1:1")
    assert node.args == ("--weird", "/d")


def test_error_carries_file_name_and_docker_message() -> None:
    with pytest.raises(DockerfileError) as info:
        parse_dockerfile("FROM a\nFORM b\n", "build/Containerfile")
    err = info.value
    assert str(err) == "build/Containerfile:2: unknown instruction: FORM (did you mean FROM?)"
    assert (err.filename, err.line) == ("build/Containerfile", 2)
    assert err.docker_message == "dockerfile parse error on line 2: unknown instruction: FORM (did you mean FROM?)"


def test_copy_destination_semantics() -> None:
    df = parse_dockerfile("FROM a\nCOPY a /d/\nCOPY a /f\nCOPY a b /d\nCOPY a .\n")
    dests = [(i.dest_is_dir, i.has_several_sources) for i in df.stages[0].instructions]
    assert dests == [(True, False), (False, False), (False, True), (True, False)]


def test_expose_port_specs() -> None:
    df = parse_dockerfile("FROM a\nEXPOSE 80 53/UDP 7000-7001\n")
    expose = df.stages[0].instructions[0]
    assert isinstance(expose, ins.Expose)
    assert expose.port_specs() == ("53/udp", "7000/tcp", "7001/tcp", "80/tcp")


def test_instructions_are_frozen() -> None:
    df = parse_dockerfile("FROM a\nUSER me\n")
    with pytest.raises(AttributeError):
        df.stages[0].instructions[0].user = "root"  # type: ignore[misc]


def test_onbuild_trigger_round_trip() -> None:
    from cli.build import parse_onbuild_trigger
    df = parse_dockerfile("FROM a\nONBUILD COPY --chown=1 . /app\n")
    onbuild = df.stages[0].instructions[0]
    trigger = parse_onbuild_trigger(onbuild.expression, "image busybox")
    assert trigger == dataclasses.replace(onbuild.trigger, line=1, end_line=1)
    with pytest.raises(DockerfileError, match="^image x:1: FROM isn't allowed"):
        parse_onbuild_trigger("FROM scratch", "image x")


def test_platform_args_reach_a_stage_only_when_declared() -> None:
    from cli.build import StageScope, platform_args, resolve_meta_args
    df = parse_dockerfile("FROM --platform=$BUILDPLATFORM a\nARG TARGETARCH\nRUN x\n")
    meta = resolve_meta_args(df, {}, automatic=platform_args("linux", "arm64", "v8",
                                                               build_arch="amd64", build_variant=""))
    scope = StageScope(df, meta, {})
    assert "TARGETARCH" not in scope.variables()
    scope.expand(df.stages[0].instructions[0])
    assert scope.variables()["TARGETARCH"] == "arm64"
    assert meta.values["BUILDPLATFORM"] == "linux/amd64"
    assert meta.values["TARGETPLATFORM"] == "linux/arm64/v8"


def test_only_newline_ends_a_line() -> None:
    nodes = parse("FROM a\r\nRUN printf 'a\x0cb\u2028c'\nRUN <<EOF\r\nline\r\nEOF\r\n").nodes
    assert nodes[1].args == ("printf 'a\x0cb\u2028c'",)
    assert nodes[2].heredocs[0].content == "line\r\n"


def test_heredoc_at_end_of_file_without_newline() -> None:
    nodes = parse("FROM a\nRUN <<EOF\nx\nEOF").nodes
    assert nodes[1].heredocs[0].content == "x\n"
