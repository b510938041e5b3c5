"""Table tests for .dockerignore matching, taken from moby/patternmatcher's own tests,
plus reading rules and a real directory walk."""

from __future__ import annotations

import os

import pytest

from cli.build.dockerignore import (ContextEntry, DockerIgnore, PatternError, clean_path,
                                    compile_pattern, read_patterns)
from cli.build.errors import DockerfileError

FAIL, EXACT, INEXACT = "fail", "exact", "inexact"

# patternmatcher_test.go TestMatches: (pattern, path, result)
MATCHES = [
    ("**", "file", EXACT), ("**", "file/", EXACT), ("**/", "file", EXACT),
    ("**/", "file/", EXACT), ("**", "/", EXACT), ("**/", "/", EXACT),
    ("**", "dir/file", EXACT), ("**/", "dir/file", EXACT), ("**", "dir/file/", EXACT),
    ("**/", "dir/file/", EXACT), ("**/**", "dir/file", EXACT), ("**/**", "dir/file/", EXACT),
    ("dir/**", "dir/file", EXACT), ("dir/**", "dir/file/", EXACT),
    ("dir/**", "dir/dir2/file", EXACT), ("dir/**", "dir/dir2/file/", EXACT),
    ("**/dir", "dir", EXACT), ("**/dir", "dir/file", INEXACT),
    ("**/dir2/*", "dir/dir2/file", EXACT), ("**/dir2/*", "dir/dir2/file/", INEXACT),
    ("**/dir2/**", "dir/dir2/dir3/file", EXACT), ("**/dir2/**", "dir/dir2/dir3/file/", EXACT),
    ("**file", "file", EXACT), ("**file", "dir/file", EXACT), ("**/file", "dir/file", EXACT),
    ("**file", "dir/dir/file", EXACT), ("**/file", "dir/dir/file", EXACT),
    ("**/file*", "dir/dir/file", EXACT), ("**/file*", "dir/dir/file.txt", EXACT),
    ("**/file*txt", "dir/dir/file.txt", EXACT), ("**/file*.txt", "dir/dir/file.txt", EXACT),
    ("**/file*.txt*", "dir/dir/file.txt", EXACT), ("**/**/*.txt", "dir/dir/file.txt", EXACT),
    ("**/**/*.txt2", "dir/dir/file.txt", FAIL), ("**/*.txt", "file.txt", EXACT),
    ("**/**/*.txt", "file.txt", EXACT), ("a**/*.txt", "a/file.txt", EXACT),
    ("a**/*.txt", "a/dir/file.txt", EXACT), ("a**/*.txt", "a/dir/dir/file.txt", EXACT),
    ("a/*.txt", "a/dir/file.txt", FAIL), ("a/*.txt", "a/file.txt", EXACT),
    ("a/*.txt**", "a/file.txt", EXACT), ("a[b-d]e", "ae", FAIL), ("a[b-d]e", "ace", EXACT),
    ("a[b-d]e", "aae", FAIL), ("a[^b-d]e", "aze", EXACT), (".*", ".foo", EXACT),
    (".*", "foo", FAIL), ("abc.def", "abcdef", FAIL), ("abc.def", "abc.def", EXACT),
    ("abc.def", "abcZdef", FAIL), ("abc?def", "abcZdef", EXACT), ("abc?def", "abcdef", FAIL),
    ("**/foo/bar", "foo/bar", EXACT), ("**/foo/bar", "dir/foo/bar", EXACT),
    ("**/foo/bar", "dir/dir2/foo/bar", EXACT), ("abc/**", "abc", FAIL),
    ("abc/**", "abc/def", EXACT), ("abc/**", "abc/def/ghi", EXACT), ("**/.foo", ".foo", EXACT),
    ("**/.foo", "bar.foo", FAIL), ("a(b)c/def", "a(b)c/def", EXACT),
    ("a(b)c/def", "a(b)c/xyz", FAIL), ("a.|)$(}+{bc", "a.|)$(}+{bc", EXACT),
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", EXACT),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", EXACT),
    ("a\\\\", "a\\", EXACT), ("a\\*b", "a*b", EXACT),
]

MULTI = [
    (["**", "!util/docker/web"], "util/docker/web/foo", FAIL),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", EXACT),
    (["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", FAIL),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", FAIL),
    (["*.go"], "fileutils.go", EXACT),
    (["!fileutils.go", "*.go"], "fileutils.go", EXACT),
    (["*.go", "!fileutils.go"], "fileutils.go", FAIL),
    (["docs", "!docs/README.md"], "docs/README.md", FAIL),
    (["docs/", "!docs/README.md"], "docs/README.md", FAIL),
    (["docs/*", "!docs/README.md"], "docs/README.md", FAIL),
    (["docs"], "docs/sub/deep/file", INEXACT),
    ([], "/any/path/there", FAIL),
]

# Go's filepath.Match table as patternmatcher_test.go TestMatch runs it: (pattern, path, ok, err)
GO_MATCH = [
    ("abc", "abc", True, False), ("*", "abc", True, False), ("*c", "abc", True, False),
    ("a*", "a", True, False), ("a*", "abc", True, False), ("a*", "ab/c", True, False),
    ("a*/b", "abc/b", True, False), ("a*/b", "a/c/b", False, False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True, False), ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True, False),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False, False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False, False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True, False), ("a*b?c*x", "abxbbxdbxebxczzy", False, False),
    ("ab[c]", "abc", True, False), ("ab[b-d]", "abc", True, False), ("ab[e-g]", "abc", False, False),
    ("ab[^c]", "abc", False, False), ("ab[^b-d]", "abc", False, False),
    ("ab[^e-g]", "abc", True, False), ("a\\*b", "a*b", True, False), ("a\\*b", "ab", False, False),
    ("a?b", "a☺b", True, False), ("a[^a]b", "a☺b", True, False), ("a???b", "a☺b", False, False),
    ("a[^a][^a][^a]b", "a☺b", False, False), ("[a-ζ]*", "α", True, False),
    ("*[a-ζ]", "A", False, False), ("a?b", "a/b", False, False), ("a*b", "a/b", False, False),
    ("[\\]a]", "]", True, False), ("[\\-]", "-", True, False), ("[x\\-]", "x", True, False),
    ("[x\\-]", "-", True, False), ("[x\\-]", "z", False, False), ("[\\-x]", "x", True, False),
    ("[\\-x]", "-", True, False), ("[\\-x]", "a", False, False),
    ("[]a]", "]", False, True), ("[-]", "-", False, True), ("[x-]", "x", False, True),
    ("[x-]", "-", False, True), ("[x-]", "z", False, True), ("[-x]", "x", False, True),
    ("[-x]", "-", False, True), ("[-x]", "a", False, True), ("\\", "a", False, True),
    ("[a-b-c]", "a", False, True), ("[", "a", False, True), ("[^", "a", False, True),
    ("[^bc", "a", False, True), ("a[", "a", False, True), ("a[", "ab", False, True),
    ("*x", "xxx", True, False),
]


@pytest.mark.parametrize("pattern,path,result", MATCHES)
def test_matches_table(pattern: str, path: str, result: str) -> None:
    compiled = compile_pattern(pattern)
    assert compiled.match(path) == (result == EXACT)
    assert DockerIgnore([pattern]).match_path(path) == (result != FAIL)


@pytest.mark.parametrize("patterns,path,result", MULTI)
def test_multi_pattern_table(patterns: list[str], path: str, result: str) -> None:
    assert DockerIgnore(patterns).match_path(path) == (result != FAIL)


@pytest.mark.parametrize("pattern,path,ok,bad", GO_MATCH)
def test_go_filepath_match_table(pattern: str, path: str, ok: bool, bad: bool) -> None:
    if bad:
        with pytest.raises(PatternError):
            DockerIgnore([pattern])
        return
    assert DockerIgnore([pattern]).matches(path) == ok


@pytest.mark.parametrize("pattern,kind", [
    ("*", "regex"), ("file*", "regex"), ("**", "suffix"), ("**/**", "regex"),
    ("dir/**", "prefix"), ("**/dir", "suffix"), ("**/dir2/*", "regex"), ("**file", "suffix"),
    ("abc", "exact"), ("a[b-d]e", "regex"),
])
def test_compiled_kind(pattern: str, kind: str) -> None:
    assert compile_pattern(pattern).kind == kind


def test_single_exclamation_is_an_error() -> None:
    with pytest.raises(PatternError, match='illegal exclusion pattern: "!"'):
        DockerIgnore(["!"])


def test_bad_pattern_in_file_is_a_located_user_error() -> None:
    with pytest.raises(DockerfileError, match=r"^\.dockerignore: error parsing ignore file"):
        DockerIgnore.from_text("ok\n[\n")


def test_whole_context_is_never_excluded() -> None:
    assert not DockerIgnore(["*.go", "**"]).matches(".")
    assert not DockerIgnore(["**"]).matches("./")


@pytest.mark.parametrize("text,expected", [
    ("# comment\n\nfoo\n  bar  \n", ["foo", "bar"]),
    ("/absolute\n./relative\n!/root-exception\n!  spaced\n", ["absolute", "relative", "!root-exception", "!spaced"]),
    ("a//b/../c/\n/\n", ["a/c", "/"]),
    ("\ufeff# bom comment\nx\n", ["x"]),
    (" # not a comment: hash after a blank\n", ["# not a comment: hash after a blank"]),
])
def test_read_patterns(text: str, expected: list[str]) -> None:
    assert read_patterns(text) == expected


@pytest.mark.parametrize("path,cleaned", [
    ("", "."), ("./a", "a"), ("a/./b/", "a/b"), ("a/../..", ".."), ("/../a", "/a"), ("//a//b", "/a/b"),
])
def test_clean_path(path: str, cleaned: str) -> None:
    assert clean_path(path) == cleaned


def test_leading_slash_and_dot_slash_patterns_match_relative_paths() -> None:
    ignore = DockerIgnore.from_text("/build\n./tmp/*.log\n")
    assert ignore.matches("build/out.o")
    assert ignore.matches("tmp/x.log")
    assert not ignore.matches("src/build")


def _make_tree(root: str, paths: list[str]) -> None:
    for rel in paths:
        full = os.path.join(root, rel)
        if rel.endswith("/"):
            os.makedirs(full, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(rel)


def test_walk_yields_included_entries_and_prunes(tmp_path) -> None:
    root = str(tmp_path)
    _make_tree(root, [
        ".dockerignore", "Dockerfile", "src/main.go", "src/main_test.go", "node_modules/a/b.js",
        "docs/README.md", "docs/guide.md", "build/out/bin", "empty/",
    ])
    os.symlink("src/main.go", os.path.join(root, "link"))
    with open(os.path.join(root, ".dockerignore"), "w") as f:
        f.write("node_modules\n**/*_test.go\ndocs\n!docs/README.md\nbuild\n!**/bin\n")
    ignore = DockerIgnore.load(root)
    entries = list(ignore.walk(root))
    assert entries == [
        ContextEntry(".dockerignore", "file"), ContextEntry("Dockerfile", "file"),
        ContextEntry("docs/README.md", "file"), ContextEntry("empty", "dir"),
        ContextEntry("link", "symlink"), ContextEntry("src", "dir"),
        ContextEntry("src/main.go", "file"),
    ]
    assert ignore.can_prune("node_modules")
    assert not ignore.can_prune("docs")  # an exception reaches inside
    assert ignore.can_prune("build")  # wildcard exceptions do not stop pruning (Docker's shortcut)
    assert not ignore.can_prune("src")  # not excluded at all


def test_missing_ignore_file_includes_everything(tmp_path) -> None:
    _make_tree(str(tmp_path), ["a/b", "c"])
    assert [e.path for e in DockerIgnore.load(str(tmp_path)).walk(str(tmp_path))] == ["a", "a/b", "c"]
