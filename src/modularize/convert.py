"""`convert`: the pure core. Source text in, package files out; no disk, no imports of the input.

    files = convert(source_text, ConvertOptions(path="pipeline_stable_diffusion.py"))
    files["denoise.py"]  # -> the generated text, header included

Deterministic: the same text and options give byte-identical files in any process.
"""

from __future__ import annotations

from .analysis.analyze import analyze
from .emit.package import emit_package
from .frontend.parse import parse_source
from .options import ConvertOptions, generator_string
from .planning.plan import PipelinePlan

__all__ = ["ConvertOptions", "convert", "generator_string", "plan_for"]


def plan_for(source_text: str, options: ConvertOptions) -> PipelinePlan:
    source = parse_source(source_text, options.path, options.label, options.module_name)
    return analyze(source, options.class_name)


def convert(source_text: str, options: ConvertOptions) -> dict[str, str]:
    plan = plan_for(source_text, options)
    return emit_package(plan, source_text, generator_string(options), in_tree=options.in_tree)
