"""The shell-word lexer against BuildKit's own expectations (``shell/lex_test.go`` and its
``envVarTest`` table), with the same environment."""

from __future__ import annotations

import pytest

from cli.build.expand import ExpansionError, ShellLex

ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}
ERROR = object()

# (source, expected) — envVarTest rows that apply on Unix
ENV_VAR_TABLE = [
    ("hello", "hello"), ("he'll'o", "hello"), ("he'llo", ERROR), ("he\\'llo", "he'llo"),
    ("he\\\\'llo", ERROR), ("abc\\\\", "abc\\"), ('"abc\\\\"', "abc\\"), ("'abc\\\\'", "abc\\\\"),
    ("abc\\\\\\\\", "abc\\\\"), ('"hello"', "hello"), ('he"ll"o', "hello"), ('he"llo', ERROR),
    ('he\\"llo', 'he"llo'), ('he\\\\"llo', ERROR), ('"a\\"b"', 'a"b'), ('"a\\\\"b"', ERROR),
    ("'a\\\"b'", 'a\\"b'), ('"a\\\'b"', "a\\'b"), ("'a\\\\'b'", ERROR),
    ('"$PWD"', "/home"), ("$PWD", "/home"), ("'$PWD'", "$PWD"), ("\\$PWD", "$PWD"),
    ("${PWD}", "/home"), ("$PWD$SHELL", "/homebash"), ("he\\$PWD", "he$PWD"),
    ("he\\\\$PWD", "he\\/home"), ('"he\\$PWD"', "he$PWD"), ('"he\\\\$PWD"', "he\\/home"),
    ("\\${}", "${}"), ("\\${}aaa", "${}aaa"), ("he\\${}", "he${}"), ("he\\${}xx", "he${}xx"),
    ("${}", ERROR), ("${}xx", ERROR), ("he${}", ERROR), ("he${}xx", ERROR),
    ("he${hi}", "he"), ("he${hi}xx", "hexx"), ("he${PWD}", "he/home"), ("he${.}", ERROR),
    ("he${XXX:-000}xx", "he000xx"), ("he${PWD:-000}xx", "he/homexx"),
    ("he${XXX:-$PWD}xx", "he/homexx"), ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
    ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"), ("he${XXX:YYY}", ERROR), ("he${XXX?}", ERROR),
    ("he${XXX:?}", ERROR), ("he${PWD?}", "he/home"), ("he${PWD:?}", "he/home"),
    ("he${NULL?}", "he"), ("he${NULL:?}", ERROR), ("he${XXX:+${PWD}}xx", "hexx"),
    ("he${PWD:+${XXX}}xx", "hexx"), ("he${PWD:+${SHELL}}xx", "hebashxx"),
    ("he${XXX:+000}xx", "hexx"), ("he${PWD:+000}xx", "he000xx"), ("'he${XX}'", "he${XX}"),
    ('"he${PWD}"', "he/home"), ('"he\'$PWD\'"', "he'/home'"), ("'\\$PWD'", "\\$PWD"),
    ("'\"hello\"'", '"hello"'), ("'he\\$PWD'", "he\\$PWD"), ("he${PWD", ERROR),
    ("he${PWD=000}xx", ERROR), ("he${PWD+${PWD}:}xx", "he/home:xx"),
    ("he${XXX:-\\$PWD:}xx", "he$PWD:xx"), ("he${XXX:-\\${PWD}z}xx", "he${PWDz}xx"),
    ("안녕하세요", "안녕하세요"), ("안'녕'하세요", "안녕하세요"), ("안'녕하세요", ERROR),
    ("안녕\\'하세요", "안녕'하세요"), ("안\\\\'녕하세요", ERROR), ("안녕\\t하세요", "안녕t하세요"),
    ("안녕\\&하세요", "안녕&하세요"), ("안녕\\$하세요", "안녕$하세요"), ("$KOREAN", "한국어"),
    ("안$KOREAN", "안한국어"), ("${{aaa}", ERROR), ("${aaa}}", "}"), ("${aaa}}}", "}}"),
    ("${aaa:-bbb}}", "bbb}"), ("${aaa:-${bbb:-ccc}}}", "ccc}"), ("${aaa:-}}", "}"),
    ("${:-aaa}", ERROR), ("$.", "$."), ("$", "$"), ("$1", ""), ("$1x", "x"), ("$10x", "x"),
    ("$#", ""), ("trailing\\", "trailing"),
]

# lex_test.go TestProcessWithMatches: (input, env, expected or ERROR)
MATCHES_TABLE = [
    ("x ${UNUSED}", {"DUMMY": "dummy"}, "x "),
    ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx  ccc"),
    ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx bbb ccc"),
    ("${FOO:-}", {}, ""),
    ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa bbb "),
    ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa  "),
    ("${BAR?bbb}", {"BAR": ""}, ""), ("${BAZ?ccc}", {}, ERROR), ("${BAR:?bbb}", {"BAR": ""}, ERROR),
    ("${BAZ:?}", {}, ERROR), ("${FOO=aaa}", {"FOO": "xxx"}, ERROR), ("${FOO=:aaa}", {"FOO": "x"}, ERROR),
    ("${FOO=}", {}, ERROR),
    ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", {"FOO": "()[]{}^$.*?|\\x"}, "x"),
    ("${FOO%%\\**}", {"FOO": "xx**"}, "xx"), ("${FOO#*x*y}", {"FOO": "xxyy"}, "y"),
    ("${FOO#*}", {"FOO": "xxyy"}, "xxyy"), ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": "x"}, "xyy"),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy"), ("${FOO#}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO##*x}", {"FOO": "xxyy"}, "yy"), ("${FOO##}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO#?\\?}", {"FOO": "???y"}, "?y"), ("${ABC:-.}${FOO%x}${ABC:-.}", {"FOO": "xxyy"}, ".xxyy."),
    ("${FOO%%\\**\\*}", {"FOO": "a***yy*"}, "a"), ("${FOO%}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO%%$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy"),
    ("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", {"FOO": "/foo*/*/*.txt", "NEEDLE": "\\*/"},
     "/foo.*/*.txt - /foo..*.txt"),
    ("${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", {"FOO": "/tmp/tmp/bar.txt", "NEEDLE": "/tmp"},
     "/tmp/bar.txt - /bar.txt"),
    ("${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
     {"FOO": "/a/foo/b/c.txt", "NEEDLE": "/?/", "REPLACEMENT": "/"}, "/foo/b/c.txt - /foo/c.txt"),
    ("${FOO/$NEEDLE/$REPLACEMENT}",
     {"FOO": "http://google.de", "NEEDLE": "http://", "REPLACEMENT": "https://"}, "https://google.de"),
    ("${FOO//\\//\\/}", {"FOO": "/tmp/foo.txt"}, "\\/tmp\\/foo.txt"),
    ("${FOO/$BAR/ww}", {"FOO": "xxyy", "BAR": ""}, "wwxxyy"),
    ("${FOO//ww}", {"FOO": "xxyy"}, ERROR), ("${FOO//}", {"FOO": "xxyy"}, ERROR),
    ("${FOO///}", {"FOO": "xxyy"}, "xxyy"), ("${FOO///}", {}, ""),
    ("something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
     {"VERSION": "v1.2.3", "TARGETOS": "linux", "TARGETARCH": "arm", "TARGETVARIANT": "v7"},
     "something-v1.2.3.linux-arm-v7.tar.gz"),
]

# ProcessWords: (source, env, words)
WORDS_TABLE = [
    ("hello", {}, ["hello"]), ("hello world", {}, ["hello", "world"]),
    ("hello   world  ", {}, ["hello", "world"]), ("'hello world'", {}, ["hello world"]),
    ('"hello world"', {}, ["hello world"]), ("hello\\ world", {}, ["hello world"]),
    ("$X", {"X": "a b"}, ["a", "b"]), ('"$X"', {"X": "a b"}, ["a b"]),
    ("pre$X", {"X": "a b"}, ["prea", "b"]), ("''", {}, [""]), ("a '' b", {}, ["a", "", "b"]),
    ("${X:-a b}", {}, ["a", "b"]),
]


@pytest.mark.parametrize("source,expected", ENV_VAR_TABLE)
def test_env_var_table(source: str, expected) -> None:
    lex = ShellLex()
    if expected is ERROR:
        with pytest.raises(ExpansionError):
            lex.process_word(source, ENV)
    else:
        assert lex.process_word(source, ENV) == expected


@pytest.mark.parametrize("source,env,expected", MATCHES_TABLE)
def test_process_with_matches_table(source: str, env: dict, expected) -> None:
    lex = ShellLex()
    if expected is ERROR:
        with pytest.raises(ExpansionError):
            lex.process_word(source, env)
    else:
        assert lex.process_word(source, env) == expected


@pytest.mark.parametrize("source,env,expected", WORDS_TABLE)
def test_words_table(source: str, env: dict, expected: list[str]) -> None:
    assert ShellLex().process_words(source, env) == expected


def test_mandatory_variables_messages() -> None:
    lex = ShellLex()
    with pytest.raises(ExpansionError, match="VAR: message herex"):
        lex.process_word("${VAR:?message here$ARG}", {"VAR": "", "ARG": "x"})
    with pytest.raises(ExpansionError, match="VAR: is not allowed to be unset"):
        lex.process_word("${VAR?}", {})
    with pytest.raises(ExpansionError, match="VAR: is not allowed to be empty"):
        lex.process_word("${VAR:?}", {"VAR": ""})


def test_backtick_escape_token() -> None:
    lex = ShellLex("`")
    assert lex.process_word("C:\\path`$X", {"X": "1"}) == "C:\\path$X"
    assert lex.process_word('"a`"b"', {}) == 'a"b'


def test_skip_unset_and_raw_quotes_keep_source_text() -> None:
    lex = ShellLex(raw_quotes=True, skip_unset=True)
    assert lex.process_word("'$A' \"$B\" $C ${D} ${E:-x}", {"B": "b"}) == "'$A' \"b\" $C ${D} ${E:-x}"


def test_used_names_are_recorded() -> None:
    lex = ShellLex()
    lex.process_word("$A ${B:-$C} '$D'", {"A": "1"})
    assert lex.used == {"A", "B", "C"}
