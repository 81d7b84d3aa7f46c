"""`convert`: the pure core. Source text in, package files out; no imports of the input, no disk but what the
caller's `read_module` reads.

    files = convert(source_text, ConvertOptions(path="pipeline_stable_diffusion.py"))
    files["denoise.py"]  # -> the generated text, header included

A pipeline built of other pipelines (`self.prior_pipe = KandinskyV22PriorPipeline(...)`, called in `__call__`)
is converted with those pipelines: `read_module(dotted_name)` gives their modules' sources
(`frontend.source_file.module_reader`), and each becomes a package whose modules sit beside the pipeline's own,
named with the attribute in front (`prior_pipe_denoise.py`).

Deterministic: the same text and options give byte-identical files in any process. Every file it returns compiles
and defines every name it reads (`emit.validate`); output failing that is a converter bug, raised, never returned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from .analysis.analyze import analyze
from .collector import collector_paused
from .cst.tree_walk import remember_tree, remembered_children, remembered_value
from .emit.family import emit_family
from .emit.package import emit_package
from .emit.validate import check_generated
from .errors import ConversionError
from .frontend.parse import SourceModule, find_pipeline_class, is_pipeline_class, parse_source
from .frontend.source_file import SourceFile
from .frontend.sub_pipelines import SubPipelineUse, sub_pipeline_uses
from .options import ConvertOptions, generator_string
from .planning.family import FamilyPlan, family_plan
from .planning.plan import PipelinePlan, SubPipelinePlan

__all__ = [
    "ConvertOptions",
    "convert",
    "convert_family",
    "family_files",
    "family_plan_for",
    "generator_string",
    "package_files",
    "plan_for",
    "plan_of",
]

ModuleReader = Callable[[str], SourceFile | None]


@collector_paused()
def plan_for(source_text: str, options: ConvertOptions, read_module: ModuleReader | None = None) -> PipelinePlan:
    source = parse_source(source_text, options.path, options.label, options.module_name)
    return plan_of(source, options.class_name, read_module, options.in_tree)


def plan_of(
    source: SourceModule,
    class_name: str | None,
    read_module: ModuleReader | None = None,
    in_tree: bool = False,
    outer: tuple[str, ...] = (),
) -> PipelinePlan:
    """The plan of one pipeline class of a parsed source, with the plans of the pipelines it builds (`outer`: the
    pipelines building this one, so one building itself is refused rather than converted forever)."""
    with remembered_children():
        node = find_pipeline_class(source, class_name)
        remember_tree(node)  # (the rest of the module is listed where the analysis asks about it)
        inner = (*outer, f"{source.module_name or source.label}.{node.name.value}")
        subs = tuple(
            sub
            for use in sub_pipeline_uses(source, node)
            if (sub := _sub_pipeline(source, use, in_tree, read_module, inner)) is not None
        )
        return analyze(source, class_name, subs)


def _built_by(plan: PipelinePlan) -> set[str]:
    """The pipelines a plan converts (its own, those it builds, theirs), as `plan_of` names them in `outer`."""
    names = {f"{plan.source_module or plan.source_label}.{plan.class_name}"}
    for sub in plan.sub_pipelines:
        names |= _built_by(sub.plan)
    return names


def _sub_pipeline(
    source: SourceModule,
    use: SubPipelineUse,
    in_tree: bool,
    read_module: ModuleReader | None,
    outer: tuple[str, ...],
) -> SubPipelinePlan | None:
    """The plan of a pipeline `__init__` builds, or None when what it builds is no pipeline (an ordinary derived
    attribute); refused when its source cannot be read, or it cannot be converted itself."""
    what = f"`self.{use.attribute}` is a `{use.class_name}` built from the components"
    looks_like_pipeline = use.class_name.endswith("Pipeline")
    found = read_module(use.module) if read_module is not None else None
    if found is None:
        if not looks_like_pipeline:
            return None
        raise source.refuse(
            use.node,
            f"{what}, and its module `{use.module}` cannot be read: a pipeline made of pipelines is converted with them",
            fix="convert the file from its place in the package tree, next to the pipelines it builds",
        )
    # (several pipelines of one file build the same ones: each module parsed once, each pipeline planned once)
    key = (str(found.path), found.text, found.label, found.module_name)
    sub_source = remembered_value(
        "parsed module", key, lambda: parse_source(found.text, str(found.path), found.label, found.module_name)
    )
    node = next((n for n in sub_source.tree.body if getattr(n, "name", None) and n.name.value == use.class_name), None)
    if node is None or not is_pipeline_class(node):
        if not looks_like_pipeline:
            return None
        raise source.refuse(use.node, f"{what}, and `{use.module}` defines no pipeline class `{use.class_name}`")
    if f"{use.module}.{use.class_name}" in outer:
        raise source.refuse(use.node, f"{what}, which builds the pipeline building it")
    sub_options = ConvertOptions(
        path=str(found.path),
        label=found.label,
        module_name=found.module_name,
        class_name=use.class_name,
        in_tree=in_tree,
    )
    planned = remembered_value("planned pipeline", (key, use.class_name, in_tree), dict)
    plan = planned.get("plan")
    if plan is None or not _built_by(plan).isdisjoint(outer):  # (planned for a pipeline building none of them)
        try:
            plan = plan_of(sub_source, use.class_name, read_module, in_tree, outer)
        except ConversionError as error:
            raise source.refuse(use.node, f"{what}, which cannot be converted: {error}") from None
        planned["plan"] = plan
    return SubPipelinePlan(use.attribute, plan, found.text, generator_string(sub_options))


@collector_paused()
def package_files(plan: PipelinePlan, source_text: str, options: ConvertOptions) -> dict[str, str]:
    """The package's files for a plan; every file compiles and defines what it reads, or `GeneratedCodeError`
    (a converter bug) is raised and nothing may be written."""
    with remembered_children():
        files = emit_package(plan, source_text, generator_string(options), in_tree=options.in_tree)
    check_generated(files)
    return files


@collector_paused()
def convert(source_text: str, options: ConvertOptions, read_module: ModuleReader | None = None) -> dict[str, str]:
    with remembered_children():
        return package_files(plan_for(source_text, options, read_module), source_text, options)


@collector_paused()
def family_plan_for(
    sources: Sequence[tuple[str, ConvertOptions]], read_module: ModuleReader | None = None
) -> FamilyPlan:
    """The family of the pipelines in `sources` ((text, options) each, one workflow each)."""
    with remembered_children():
        return family_plan([plan_for(text, options, read_module) for text, options in sources])


@collector_paused()
def family_files(family: FamilyPlan, sources: Sequence[tuple[str, ConvertOptions]]) -> dict[str, str]:
    """The family's package: every file compiles and defines what it reads, as `package_files` checks."""
    texts = {options.label: text for text, options in sources}
    options = sources[0][1]
    # (each workflow's class is in the headers' sources: the generator records the options they share)
    generator = generator_string(replace(options, class_name=None))
    with remembered_children():
        files = emit_family(family, texts, generator, in_tree=options.in_tree)
    check_generated(files)
    return files


def convert_family(
    sources: Sequence[tuple[str, ConvertOptions]], read_module: ModuleReader | None = None
) -> dict[str, str]:
    """Several pipelines as the workflows of one package (`planning.family`, `emit.family`)."""
    return family_files(family_plan_for(sources, read_module), sources)
