"""Golden-file tests: every directory under cases/ is one Dockerfile and its expected result.

Set ``LAYERBOX_UPDATE_GOLDEN=1`` to (re)write the expected files, then review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cli.build import DockerfileError
from tests.build.golden import run_case

CASES = Path(__file__).parent / "cases"
UPDATE = os.environ.get("LAYERBOX_UPDATE_GOLDEN") == "1"


def _case_dirs() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if (p / "Dockerfile").exists())


@pytest.mark.parametrize("case_dir", _case_dirs(), ids=lambda p: p.name)
def test_golden(case_dir: Path) -> None:
    expected_json = case_dir / "expected.json"
    expected_error = case_dir / "expected-error.txt"
    try:
        result = run_case(case_dir)
    except DockerfileError as exc:
        if UPDATE and not expected_json.exists():
            expected_error.write_text(str(exc) + "\n")
        assert expected_error.exists(), f"unexpected error: {exc}"
        assert str(exc) == expected_error.read_text().rstrip("\n")
        return
    rendered = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    if UPDATE and not expected_error.exists():
        expected_json.write_text(rendered)
    assert not expected_error.exists(), "expected an error, parsing succeeded"
    assert json.loads(rendered) == json.loads(expected_json.read_text())


def test_there_are_enough_cases() -> None:
    assert len(_case_dirs()) >= 40
