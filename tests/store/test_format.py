import io
from datetime import datetime, timedelta, timezone

import pytest

from cli.format import ago, human_duration, human_size, print_formatted, print_table


@pytest.mark.parametrize("size, text", [
    (0, "0B"), (999, "999B"), (1000, "1kB"), (4261550, "4.26MB"), (872000, "872kB"),
    (1_500_000_000, "1.5GB"), (12_345_678, "12.3MB")])
def test_human_size(size, text):
    assert human_size(size) == text


@pytest.mark.parametrize("seconds, text", [
    (0.2, "Less than a second"), (1, "1 second"), (30, "30 seconds"), (90, "About a minute"),
    (150, "2 minutes"), (3600, "About an hour"), (5 * 3600, "5 hours"), (3 * 86400, "3 days"),
    (20 * 86400, "2 weeks"), (100 * 86400, "3 months"), (800 * 86400, "2 years")])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_ago():
    now = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)
    then = (now - timedelta(minutes=2, seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.000000001Z")
    assert ago(then, now) == "2 minutes ago"
    assert ago(None) == "N/A"


def test_table_and_formats():
    out = io.StringIO()
    print_table(["A", "LONGER HEADER"], [["x", "1"], ["yyyyyyyyyyyy", "2"]], out)
    assert out.getvalue().splitlines() == [
        "A" + " " * 14 + "LONGER HEADER", "x" + " " * 14 + "1", "yyyyyyyyyyyy   2"]
    out = io.StringIO()
    print_formatted("{{.Repository}}:{{.Tag}} {{json .Tags}}", [
        {"Repository": "busybox", "Tag": "latest", "Tags": ["a"]}], out)
    assert out.getvalue() == 'busybox:latest ["a"]\n'
    out = io.StringIO()
    print_formatted("json", [{"ID": "x"}], out)
    assert out.getvalue() == '{"ID":"x"}\n'
