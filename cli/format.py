"""Output helpers shared by all commands: Docker's human sizes and ages, its tables,
and ``--format`` (``json``, ``table …``, or a small subset of Go templates).

Only the standard library, imported cheaply: ``layerbox images`` must start fast.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timezone

# Names for annotations only: importing typing is 2-4 ms of every command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any, TextIO

from cli.errors import UserError

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float, precision: int = 3) -> str:
    """Docker's ``units.HumanSizeWithPrecision``: decimal units, 3 significant digits."""
    size = float(size)
    i = 0
    while size >= 1000.0 and i < len(_DECIMAL_UNITS) - 1:
        size /= 1000.0
        i += 1
    return "%.*g%s" % (precision, size, _DECIMAL_UNITS[i])


def human_duration(seconds: float) -> str:
    """Docker's ``units.HumanDuration`` (``About a minute``, ``3 weeks``…)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def parse_time(text: str | None) -> datetime | None:
    """RFC 3339 (with nanoseconds, ``Z`` or an offset) → aware datetime; None if absent/bad."""
    if not text:
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", text)
    if not match:
        return None
    frac = (match[2] or "0")[:6].ljust(6, "0")
    zone = match[3] or "Z"
    zone = "+00:00" if zone == "Z" else zone
    try:
        return datetime.fromisoformat(f"{match[1]}.{frac}{zone}")
    except ValueError:
        return None


def ago(text: str | None, now: datetime | None = None) -> str:
    """``2 minutes ago`` for an RFC 3339 time; ``N/A`` when unknown (as Docker)."""
    when = parse_time(text)
    if when is None or when.year <= 1:
        return "N/A"
    now = now or datetime.now(timezone.utc)
    return human_duration(max(0.0, (now - when).total_seconds())) + " ago"


def docker_time(text: str | None) -> str:
    """``2023-11-14 22:13:20 +0000 UTC``: Go's default time format, as CreatedAt shows it."""
    when = parse_time(text)
    if when is None:
        return ""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
                out: TextIO | None = None) -> None:
    """Docker's tabwriter (minwidth 10, padding 3); the last column is not padded."""
    out = out or sys.stdout
    table = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    for row in table:
        cells = [cell.ljust(max(widths[i] + 3, 10)) for i, cell in enumerate(row[:-1])]
        out.write(("".join(cells) + row[-1]).rstrip() + "\n")


def print_json_array(items: list, out: TextIO | None = None) -> None:
    """``docker inspect``'s output: a JSON array indented by 4 spaces."""
    out = out or sys.stdout
    out.write(json.dumps(items, indent=4, ensure_ascii=False) + "\n")


# -- --format ------------------------------------------------------------------------

_FIELD_RE = re.compile(r"\{\{\s*(?:json\s+)?\.([A-Za-z0-9_.]*)\s*\}\}")


def print_documents(docs: list, fmt: str | None) -> None:
    """``inspect``'s output: each document through ``--format``, or one JSON array."""
    if fmt:
        for doc in docs:
            print(render_template(fmt, doc))
    else:
        print_json_array(docs)


def render_template(template: str, obj: Any) -> str:
    """Docker's ``--format`` template (Go's text/template) applied to OBJ."""
    from cli import gotemplate
    try:
        return gotemplate.render(template.replace("\\t", "\t").replace("\\n", "\n"), obj)
    except gotemplate.TemplateError as exc:
        raise UserError(f"template: {exc}") from None


def print_formatted(fmt: str, items: list[dict], out: TextIO | None = None) -> None:
    """``--format json`` (one object per line), ``table {{.A}}\\t{{.B}}``, or a template."""
    out = out or sys.stdout
    if fmt == "json":
        for item in items:
            out.write(json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n")
        return
    if fmt.startswith("table"):
        template = fmt[len("table"):].strip()
        columns = template.replace("\\t", "\t").split("\t")
        headers = [_header(c) for c in columns]
        rows = [[render_template(c, item) for c in columns] for item in items]
        print_table(headers, rows, out)
        return
    for item in items:
        out.write(render_template(fmt, item) + "\n")


def _header(column: str) -> str:
    match = _FIELD_RE.search(column)
    name = match[1].split(".")[-1] if match else column
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).upper()
