"""`modularize demo`: convert the installed diffusers' StableDiffusionPipeline and verify it."""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import EXIT_OK
from .console import stderr
from .convert import command_convert
from .verify import finish_verify, run_verify

DEMO_SOURCE = "pipelines/stable_diffusion/pipeline_stable_diffusion.py"


def command_demo(args) -> int:
    from ..frontend.source_file import installed_diffusers_file

    args.pipeline = str(installed_diffusers_file(DEMO_SOURCE))
    args.pipelines = [args.pipeline]
    args.class_name, args.check, args.diff, args.in_tree, args.force = None, False, False, False, False
    args.quiet = True  # stdout carries only the report (JSON with --json)
    started = time.perf_counter()
    code = command_convert(args)
    if code != EXIT_OK:
        return code
    package = Path(args.output) if args.output else Path("modular_stable_diffusion")
    stderr(f"converted {args.pipeline} -> {package}/ in {time.perf_counter() - started:.2f}s")
    stderr(f"verifying {package} against StableDiffusionPipeline (plain and exact mode)...")
    report = run_verify(package, args)
    return finish_verify(report, package, args)
