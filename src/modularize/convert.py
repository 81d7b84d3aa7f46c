"""`convert`: the pure core. Source text in, package files out; no disk, no imports of the input.

    files = convert(source_text, ConvertOptions(path="pipeline_stable_diffusion.py"))
    files["denoise.py"]  # -> the generated text, header included

Deterministic: the same text and options give byte-identical files in any process.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import __version__
from .analyze import analyze
from .emit.package import emit_package
from .format import tool_versions
from .plan import PipelinePlan
from .source import parse_source


@dataclass(frozen=True)
class ConvertOptions:
    path: str  # how to name the source in messages
    label: str | None = None  # the path recorded in headers (defaults to `path`)
    module_name: str | None = None  # dotted module name, needed to resolve relative imports
    class_name: str | None = None  # which pipeline class, when the module has several
    in_tree: bool = False  # emit diffusers' relative imports for `diffusers/modular_pipelines/<model>/`

    def describe(self) -> str:
        parts = []
        if self.class_name:
            parts.append(f"class={self.class_name}")
        if self.in_tree:
            parts.append("in-tree")
        return ", ".join(parts) or "defaults"


def generator_string(options: ConvertOptions) -> str:
    return f"modularize {__version__}; {tool_versions()}; options: {options.describe()}"


def plan_for(source_text: str, options: ConvertOptions) -> PipelinePlan:
    source = parse_source(source_text, options.path, options.label, options.module_name)
    return analyze(source, options.class_name)


def convert(source_text: str, options: ConvertOptions) -> dict[str, str]:
    plan = plan_for(source_text, options)
    return emit_package(plan, source_text, generator_string(options), in_tree=options.in_tree)
