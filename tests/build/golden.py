"""Runs one golden case through the whole front end and renders the result as JSON.

A case is ``cases/NAME/Dockerfile`` plus optional ``args.json``
(``{"build_args": {...}, "target": "name", "base_env": {...}}``) and either
``expected.json`` (the rendering below) or ``expected-error.txt`` (``str(error)``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from cli.build import (DockerfileError, StageScope, expand_from, parse_dockerfile, platform_args,
                       resolve_meta_args, stages_needed)
from cli.build.scope import unused_build_args
from cli.build import instructions as ins


def render_instruction(instr: ins.Instruction) -> dict:
    out: dict = {"kind": instr.keyword}
    for f in dataclasses.fields(instr):
        if f.name == "original":
            continue
        value = getattr(instr, f.name)
        if f.name == "end_line" and value == instr.line:
            continue
        if isinstance(value, ins.Instruction):
            value = render_instruction(value)
        elif dataclasses.is_dataclass(value):
            value = _plain(dataclasses.asdict(value))
        elif isinstance(value, tuple):
            value = [_plain(dataclasses.asdict(v)) if dataclasses.is_dataclass(v) else v
                     for v in value]
        out[f.name] = value
    if isinstance(instr, ins._CopyLike):
        out["dest_is_dir"] = instr.dest_is_dir
    return out


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def run_case(case_dir: Path) -> dict:
    text = (case_dir / "Dockerfile").read_text()
    options = json.loads((case_dir / "args.json").read_text()) if (case_dir / "args.json").exists() else {}
    build_args = options.get("build_args", {})
    df = parse_dockerfile(text, "Dockerfile")
    platform = options.get("platform")  # e.g. ["linux", "arm64", "v8"]: BuildKit's automatic args
    meta = resolve_meta_args(df, build_args, automatic=platform_args(*platform) if platform else None)
    target = df.target_stage(options.get("target"))
    needed = stages_needed(df, meta, options.get("target"))
    stages, scopes = [], []
    for stage in df.stages:
        header = expand_from(df, stage.header, meta)
        scope = StageScope(df, meta, build_args, base_env=options.get("base_env", {}))
        scopes.append(scope)
        rendered = []
        for instr in stage.instructions:
            expanded = scope.expand(instr)
            item = render_instruction(expanded)
            item["created_by"] = scope.created_by(expanded)
            rendered.append(item)
        base_stage = df.stage_by_ref(header.base, before=stage.index)
        stages.append({
            "index": stage.index, "name": stage.name, "line": header.line,
            "base": header.base, "base_stage": None if base_stage is None else base_stage.index,
            "platform": header.platform, "instructions": rendered,
            "run_env": scope.run_env(),
        })
    return {
        "directives": df.directives,
        "meta_args": meta.values,
        "target": target.index,
        "needed": [s.index for s in needed],
        "unused_build_args": unused_build_args(build_args, meta, scopes),
        "warnings": list(df.warnings),
        "stages": stages,
    }


def run_case_error(case_dir: Path) -> str | None:
    try:
        run_case(case_dir)
    except DockerfileError as exc:
        return str(exc)
    return None
