"""`convert`: the pure core. Source text in, package files out; no disk, no imports of the input.

    files = convert(source_text, ConvertOptions(path="pipeline_stable_diffusion.py"))
    files["denoise.py"]  # -> the generated text, header included

Deterministic: the same text and options give byte-identical files in any process. Every file it returns compiles
and defines every name it reads (`emit.validate`); output failing that is a converter bug, raised, never returned.
"""

from __future__ import annotations

from .analysis.analyze import analyze
from .collector import collector_paused
from .cst.tree_walk import remembered_children
from .emit.package import emit_package
from .emit.validate import check_generated
from .frontend.parse import parse_source
from .options import ConvertOptions, generator_string
from .planning.plan import PipelinePlan

__all__ = ["ConvertOptions", "convert", "generator_string", "package_files", "plan_for"]


@collector_paused()
def plan_for(source_text: str, options: ConvertOptions) -> PipelinePlan:
    source = parse_source(source_text, options.path, options.label, options.module_name)
    with remembered_children():
        return analyze(source, options.class_name)


@collector_paused()
def package_files(plan: PipelinePlan, source_text: str, options: ConvertOptions) -> dict[str, str]:
    """The package's files for a plan; every file compiles and defines what it reads, or `GeneratedCodeError`
    (a converter bug) is raised and nothing may be written."""
    with remembered_children():
        files = emit_package(plan, source_text, generator_string(options), in_tree=options.in_tree)
    check_generated(files)
    return files


@collector_paused()
def convert(source_text: str, options: ConvertOptions) -> dict[str, str]:
    with remembered_children():
        return package_files(plan_for(source_text, options), source_text, options)
