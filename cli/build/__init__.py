"""Dockerfile front end for ``layerbox build``: parse, scope, expand, describe.

    df = parse_dockerfile(text, "Dockerfile")        # DockerfileError with file:line
    meta = resolve_meta_args(df, build_args)
    for stage in stages_needed(df, meta, target):
        header = expand_from(df, stage.header, meta)  # base image or earlier stage
        scope = StageScope(df, meta, build_args, base_env=image_env, base_workdir=wd)
        for instr in stage.instructions:
            instr = scope.expand(instr)                # typed, words processed
            ...execute...; history = scope.created_by(instr, copy_source=...)

``cli.build.dockerignore`` filters the build context.
"""

from cli.build.convert import parse_dockerfile, parse_onbuild_trigger
from cli.build.errors import DockerfileError
from cli.build.history import created_by as to_history_created_by
from cli.build.scope import (MetaArgs, StageScope, expand_from, platform_args, resolve_meta_args,
                              stages_needed)

__all__ = ["DockerfileError", "MetaArgs", "StageScope", "expand_from", "parse_dockerfile",
           "parse_onbuild_trigger", "platform_args", "resolve_meta_args", "stages_needed",
           "to_history_created_by"]
