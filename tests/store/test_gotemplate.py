"""Docker's --format templates are Go templates: the forms users copy from docs."""

import pytest

from cli.errors import UserError
from cli.format import render_template
from cli.gotemplate import TemplateError, render

IMAGE = {"Id": "sha256:abc", "RepoTags": ["busybox:latest"], "RepoDigests": ["busybox@sha256:1"],
         "Config": {"Labels": {"b": "2", "a": "1"}, "Env": ["A=1", "B=2"], "Cmd": ["sh"]},
         "Size": 1234, "RootFS": {"Layers": ["sha256:l1", "sha256:l2"]},
         "State": {"Status": "exited", "Running": False, "ExitCode": 3}}


@pytest.mark.parametrize("template, expected", [
    ("{{.Id}}", "sha256:abc"),
    ("{{.Config.Cmd}}", "[sh]"),
    ("{{json .RootFS.Layers}}", '["sha256:l1","sha256:l2"]'),
    ("{{index .RepoDigests 0}}", "busybox@sha256:1"),
    ('{{index .Config.Labels "a"}}', "1"),
    ("{{.Config.Labels}}", "map[a:1 b:2]"),
    ("{{range .RootFS.Layers}}{{.}}\n{{end}}", "sha256:l1\nsha256:l2\n"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}} {{end}}", "a=1 b=2 "),
    ("{{range $i, $l := .RootFS.Layers}}{{$i}}{{$.Id}} {{end}}", "0sha256:abc 1sha256:abc "),
    ('{{join .Config.Env ","}}', "A=1,B=2"),
    ("{{if .State.Running}}up{{else if eq .State.Status \"exited\"}}exited {{.State.ExitCode}}"
     "{{else}}?{{end}}", "exited 3"),
    ("{{with .Config}}{{len .Env}}{{end}}", "2"),
    ("{{.Id | upper}}", "SHA256:ABC"),
    ("{{lower (index .RepoTags 0)}}", "busybox:latest"),
    ('{{printf "%-8s|%5d" .State.Status .Size}}', "exited  | 1234"),
    ("a {{- .Size -}} b", "a1234b"),
    ("{{/* a comment */}}ok", "ok"),
    ("{{$n := len .RootFS.Layers}}{{$n}} layers", "2 layers"),
    ("{{range .Missing}}x{{else}}none{{end}}", "none"),
])
def test_docker_format_templates(template, expected):
    assert render(template, IMAGE) == expected


@pytest.mark.parametrize("template", ["{{if .Id}}", "{{end}}", "{{.Id", "{{nosuch .Id}}", "{{$x}}",
                                      "{{.Id 3}}", "{{(.Id}}", "{{index .RootFS.Layers 7}}"])
def test_bad_templates_are_errors(template):
    with pytest.raises(TemplateError):
        render(template, IMAGE)


def test_format_reports_a_bad_template_as_one_user_error():
    with pytest.raises(UserError, match="^template: "):
        render_template("{{.Id", IMAGE)
