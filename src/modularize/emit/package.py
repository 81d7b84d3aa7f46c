"""Assemble the package: which classes go in which file, what each file must import or copy, the headers.

Each file's module-level needs are computed from the code it ended up with: every free name is resolved to the
modular framework (`ModularPipelineBlocks`, `InputParam`, ...), another file of the package, or a module-level
definition of the source, which is copied with its own dependencies (`retrieve_timesteps` needs `inspect`).
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Sequence

import libcst as cst

from ..cst.dataflow import flow_of, names_read
from ..frontend.parse import code
from ..kinds import DefinitionKind
from ..planning.plan import PERTURBED_ATTENTION_GUIDER, BlockPlan, LoopPlan, ModuleDefinition, PipelinePlan
from ..transforms.imports import import_from, plain_import, prune_unused_imports, relative_module
from .blocks import block_class, loop_classes
from .format import format_files
from .guider_class import guider_class
from .header import with_header
from .layout import LEAF_FILES, blocks_file
from .pipeline_class import (
    EXPLICIT_NONE_NAME,
    GUIDER_RUNS_UNCONDITIONAL,
    PACKAGE_BLOCKS_NAME,
    REGISTER_IN_DIFFUSERS_NAME,
    SAVED_WITH_PACKAGE_NAME,
    pipeline_class,
)
from .runtime import copied, runtime_definitions
from .splice import splice, with_bodies
from .validate import GeneratedCodeError

# Where the names generated code uses from the modular framework live (absolute; made relative in-tree).
FRAMEWORK = {
    "torch": ("torch", None),
    "numpy_to_pil": ("diffusers.utils", "numpy_to_pil"),
    "BlockState": ("diffusers.modular_pipelines.modular_pipeline", "BlockState"),
    "LoopSequentialPipelineBlocks": ("diffusers.modular_pipelines.modular_pipeline", "LoopSequentialPipelineBlocks"),
    "ModularPipeline": ("diffusers.modular_pipelines.modular_pipeline", "ModularPipeline"),
    "ModularPipelineBlocks": ("diffusers.modular_pipelines.modular_pipeline", "ModularPipelineBlocks"),
    "PipelineState": ("diffusers.modular_pipelines.modular_pipeline", "PipelineState"),
    "SequentialPipelineBlocks": ("diffusers.modular_pipelines.modular_pipeline", "SequentialPipelineBlocks"),
    "AutoPipelineBlocks": ("diffusers.modular_pipelines.modular_pipeline", "AutoPipelineBlocks"),
    "getattr_static": ("inspect", "getattr_static"),
    "ComponentSpec": ("diffusers.modular_pipelines.modular_pipeline_utils", "ComponentSpec"),
    "InputParam": ("diffusers.modular_pipelines.modular_pipeline_utils", "InputParam"),
    "InsertableDict": ("diffusers.modular_pipelines.modular_pipeline_utils", "InsertableDict"),
    "OutputParam": ("diffusers.modular_pipelines.modular_pipeline_utils", "OutputParam"),
    "FrozenDict": ("diffusers.configuration_utils", "FrozenDict"),
    "ClassifierFreeGuidance": ("diffusers.guiders", "ClassifierFreeGuidance"),
    "GuiderOutput": ("diffusers.guiders.guider_utils", "GuiderOutput"),
    "contextmanager": ("contextlib", "contextmanager"),
    "BaseGuidance": ("diffusers.guiders", "BaseGuidance"),
    "ConfigSpec": ("diffusers.modular_pipelines.modular_pipeline_utils", "ConfigSpec"),
    "deepcopy": ("copy", "deepcopy"),
    "Path": ("pathlib", "Path"),
    "shutil": ("shutil", None),
    "importlib": ("importlib", None),
    "sys": ("sys", None),
    "register_to_config": ("diffusers.configuration_utils", "register_to_config"),
    "PerturbedAttentionGuidance": ("diffusers.guiders", "PerturbedAttentionGuidance"),
    "rescale_noise_cfg": ("diffusers.guiders.guider_utils", "rescale_noise_cfg"),
    "HookRegistry": ("diffusers.hooks", "HookRegistry"),
    "AttentionProcessorSkipHook": ("diffusers.hooks.layer_skip", "AttentionProcessorSkipHook"),
    "Attention": ("diffusers.models.attention_processor", "Attention"),
    "attention_processor": ("diffusers.models", "attention_processor"),
    "PAGCFGIdentitySelfAttnProcessor2_0": (
        "diffusers.models.attention_processor",
        "PAGCFGIdentitySelfAttnProcessor2_0",
    ),
    "PAGIdentitySelfAttnProcessor2_0": ("diffusers.models.attention_processor", "PAGIdentitySelfAttnProcessor2_0"),
}
# ... and names runtime code uses that the source module may bind itself (`import regex as re`): its own binding
# wins, so the code copied from it keeps meaning what it meant
UNLESS_DEFINED = {"re": ("re", None), "inspect": ("inspect", None)}
_BUILTINS = set(dir(builtins))


def free_names(statements: Sequence[cst.CSTNode]) -> list[str]:
    """Names the statements read that they do not bind at their own top level (anywhere: functions run later)."""
    flow = flow_of(list(statements))
    return [name for name in flow.reads if name not in flow.writes]


class _File:
    """One generated module under construction."""

    def __init__(self, relpath: str, plan: PipelinePlan, in_tree: bool):
        self.relpath = relpath
        self.plan = plan
        self.module_name = None
        if in_tree:
            self.module_name = f"diffusers.modular_pipelines.{plan.package}.{relpath[:-3]}"
        self.docstring = ""
        self.body: list[cst.BaseStatement] = []
        self.bodies: dict[str, str] = {}  # class bodies' stand-in lines -> their text (see `Emitted`)

    def add_bodies(self, bodies: dict[str, str]) -> None:
        # a class several workflows of a family carry (the same code: `planning.family_sharing`) is printed once,
        # all of it as its first copy (`emit.family` keeps the first statement): descriptions naming a workflow's
        # stages and producing blocks name the same workflow throughout
        for stand_in, body in bodies.items():
            self.bodies.setdefault(stand_in, body)

    def render(self, package_names: dict[str, str], definitions: Sequence[ModuleDefinition]) -> str:
        copied, imports = _dependencies(self, package_names, definitions)
        statements: list[cst.BaseStatement] = []
        if self.docstring:
            statements.append(cst.SimpleStatementLine([cst.Expr(cst.SimpleString(f'"""{self.docstring}"""'))]))
        statements += imports
        rest = [*copied, *self.body]
        if imports and rest:
            rest[0] = _one_blank_line_before(rest[0])
        statements += rest
        return with_bodies(_module_text(statements), self.bodies)


def _module_text(statements: Sequence[cst.BaseStatement]) -> str:
    """`module_code(cst.Module(body=statements))`: a module's code is its statements' code one after the other, and
    a copied runtime definition's is known already."""
    return "".join(found.code if (found := copied(s)) is not None else code(s) for s in statements)


def _free_names_of_file(statements: Sequence[cst.BaseStatement]) -> list[str]:
    """`free_names(statements)`, with what copied runtime definitions read and bind known already (a name is free
    when some statement reads it and none binds it: the same names whether the statements are followed one
    after the other or taken one by one)."""
    flow = flow_of([s for s in statements if copied(s) is None])
    reads, writes = dict.fromkeys(flow.reads), set(flow.writes)
    for statement in statements:
        found = copied(statement)
        if found is not None:
            reads.update(dict.fromkeys(found.reads))
            writes.update(found.writes)
    return [name for name in reads if name not in writes]


def _one_blank_line_before(statement: cst.BaseStatement) -> cst.BaseStatement:
    """The statement after the imports starts with one blank line, whatever the source had there: isort's rule
    (ruff's `I001`), which `ruff format` leaves to the linter (it keeps two; before a `def` it makes two itself)."""
    lines = list(statement.leading_lines)
    while lines and lines[0].comment is None:
        lines.pop(0)
    return statement.with_changes(leading_lines=[cst.EmptyLine(), *lines])


def _dependencies(
    file: _File, package_names: dict[str, str], definitions: Sequence[ModuleDefinition]
) -> tuple[list[cst.BaseStatement], list[cst.BaseStatement]]:
    by_name: dict[str, ModuleDefinition] = {}
    for definition in definitions:
        for name in definition.names:
            by_name.setdefault(name, definition)
    needed = _free_names_of_file(file.body)
    framework: dict[str, None] = {}
    package: dict[str, None] = {}
    chosen: dict[int, ModuleDefinition] = {}
    used_names: set[str] = set()
    unresolved: list[str] = []
    while needed:
        name = needed.pop(0)
        if name in used_names:
            continue
        used_names.add(name)
        if name in FRAMEWORK:
            framework[name] = None
        elif name in package_names and package_names[name] != file.relpath:
            package[name] = None
        elif name in by_name:
            definition = by_name[name]
            if id(definition) not in chosen:
                chosen[id(definition)] = definition
                if definition.kind != DefinitionKind.IMPORT:
                    needed += [n for n in names_read(definition.node) if n not in definition.names]
        elif name in UNLESS_DEFINED:
            framework[name] = None
        elif name not in _BUILTINS and name not in package_names:
            unresolved.append(name)
    if unresolved:
        # the analysis refuses sources reading undefined names: one reaching here is the converter's doing
        raise GeneratedCodeError(
            f"generated {file.relpath} reads names nothing defines: {', '.join(sorted(unresolved))} "
            f"(converting {file.plan.class_name}; a converter bug: nothing was written)"
        )
    ordered = [d for d in definitions if id(d) in chosen]
    imports = _import_statements(
        file, framework, package, [d for d in ordered if d.kind == DefinitionKind.IMPORT], package_names
    )
    copied = []
    for definition in ordered:
        if definition.kind == DefinitionKind.IMPORT:
            continue
        node = prune_unused_imports(definition.node, used_names)
        if definition.kind in (DefinitionKind.FUNCTION, DefinitionKind.CLASS):
            node = _with_copied_from(node, definition.origin)
        copied.append(node)
    return copied, imports


def _with_copied_from(node, origin: str):
    kept = [
        line
        for line in node.leading_lines
        if line.comment is None or not line.comment.value.lstrip("# ").startswith("Copied from")
    ]
    header = cst.EmptyLine(comment=cst.Comment(f"# Copied from {origin}"))
    return node.with_changes(leading_lines=[*kept, header])


def _import_statements(
    file: _File,
    framework: dict[str, None],
    package: dict[str, None],
    source_imports: Sequence[ModuleDefinition],
    package_names: dict[str, str],
) -> list[cst.BaseStatement]:
    """Import statements grouped and ordered the way ruff's isort rules want them."""
    plain: dict[str, None] = {}
    grouped: dict[str, dict[tuple[str, str | None], None]] = {}
    for name in framework:
        module, imported = FRAMEWORK[name] if name in FRAMEWORK else UNLESS_DEFINED[name]
        if imported is None:
            plain[module] = None
        else:
            grouped.setdefault(module, {})[(imported, None)] = None
    for definition in source_imports:
        if isinstance(definition.node, cst.Import):
            for alias in definition.node.names:
                bound = alias.asname.name.value if alias.asname else code(alias.name).strip().split(".")[0]
                if bound in definition.names:
                    text = code(alias.name).strip()
                    plain[text if alias.asname is None else f"{text} as {alias.asname.name.value}"] = None
            continue
        module, _, imported = definition.origin.partition(":")
        asname = definition.names[0]
        grouped.setdefault(module, {})[(imported, asname if asname != imported else None)] = None
    for name in package:
        grouped.setdefault("." + package_names[name][:-3], {})[(name, None)] = None

    sections: dict[int, list[cst.BaseStatement]] = {}
    for name in sorted(plain, key=lambda module: _module_key(module, None)):
        sections.setdefault(_section(name, file.module_name), []).append(plain_import(name))
    for module in sorted(grouped, key=lambda module: _module_key(module, file.module_name)):
        names = sorted(grouped[module], key=lambda pair: _member_key(pair[0]))
        statement = import_from(module, names, file.module_name)  # (a relative module stays relative)
        sections.setdefault(_section(module, file.module_name), []).append(statement)
    statements: list[cst.BaseStatement] = []
    for index, section in enumerate(sorted(sections)):
        first, *rest = sections[section]
        if index:
            first = first.with_changes(leading_lines=[cst.EmptyLine()])
        statements += [first, *rest]
    return statements


def _section(module: str, in_tree_module: str | None) -> int:
    """isort sections: standard library, third party, local (relative) imports."""
    top = module.split(".")[0].split(" ")[0]
    if module.startswith(".") or (in_tree_module is not None and top == "diffusers"):
        return 2
    return 0 if top in sys.stdlib_module_names else 1


def _module_key(module: str, in_tree_module: str | None) -> tuple[int, str, str]:
    """Alphabetical, case-insensitive; relative imports furthest first (`...` before `..` before `.`)."""
    if module.startswith("."):
        level, target = len(module) - len(module.lstrip(".")), module.lstrip(".")
    elif in_tree_module is not None and module.split(".")[0] == "diffusers":
        level, target = relative_module(module, in_tree_module)
    else:
        level, target = 0, module
    return (-level, target.lower(), target)


def _member_key(name: str) -> tuple:
    """isort's order-by-type: CONSTANTS, then Classes, then functions and variables; numbers in names compare as
    numbers (`ASPECT_RATIO_256_BIN` before `ASPECT_RATIO_1024_BIN`), as ruff's isort orders them."""
    if name.isupper() and len(name) > 1:
        kind = 0
    elif name[:1].isupper():
        kind = 1
    else:
        kind = 2
    return (kind, _natural(name.lower()), name)


def _natural(text: str) -> tuple:
    parts, digits = [], ""
    word = ""
    for char in text:
        if char.isdigit():
            if word:
                parts.append((1, word, 0))
                word = ""
            digits += char
        else:
            if digits:
                parts.append((0, "", int(digits)))
                digits = ""
            word += char
    if word:
        parts.append((1, word, 0))
    if digits:
        parts.append((0, "", int(digits)))
    return tuple(parts)


def _blocks_constant(plan: PipelinePlan) -> str:
    return plan.package[len("modular_") :].upper() + "_BLOCKS"


def _built_classes(plan: PipelinePlan, prefix: str) -> dict[str, str]:
    """A class of each module of the packages of the pipelines `plan` builds (theirs too): {class: file}."""
    held: dict[str, str] = {}
    for sub in plan.sub_pipelines:
        inner = prefix + sub.prefix
        held[sub.plan.pipeline_class_name] = f"{inner}modular_pipeline.py"
        held[sub.plan.blocks_class_name] = f"{inner}{blocks_file(sub.plan.package)}"
        for block in sub.plan.blocks:
            held.setdefault(block.class_name, f"{inner}{block.file}")
        held.update(_built_classes(sub.plan, inner))
    # one class per module is enough
    firsts: dict[str, str] = {}
    for name, file in held.items():
        firsts.setdefault(file, name)
    return {name: file for file, name in firsts.items()}


def add_block(file: _File, plan: PipelinePlan, block: BlockPlan | LoopPlan, package_names: dict[str, str]) -> None:
    """The block's classes at the end of `file`, each recorded in `package_names` (a class of the same name
    recorded already, by another workflow of a family, stays where it is)."""
    if isinstance(block, LoopPlan):
        emitted = loop_classes(plan, block)
        classes = emitted.statements
        if plan.guidance.combine is not None:
            guider = guider_class(plan)
            classes = guider.statements + classes
            file.add_bodies(guider.bodies)
        # the runtime helpers the guider code calls (`merge_guider_batches`, ...), copied by name, first
        # (the mixin, say, is the package's own already: `modular_pipeline.py` carries it)
        calls = [name for name in free_names(classes) if name not in package_names]
        classes = runtime_definitions(calls) + classes
    else:
        emitted = block_class(plan, block)
        classes = emitted.statements
    file.body += classes
    file.add_bodies(emitted.bodies)
    for statement in classes:
        if isinstance(statement, cst.ClassDef):
            package_names.setdefault(statement.name.value, file.relpath)


def emit_package(
    plan: PipelinePlan, source_text: str, generator: str, in_tree: bool = False, prefix: str = ""
) -> dict[str, str]:
    """Render every file of the package, formatted, each with its header. With `prefix`, the package of a pipeline
    another one builds: its modules named with the prefix in front (`prior_pipe_denoise.py`), no `__init__.py`."""
    pipeline_file = f"{prefix}modular_pipeline.py"
    files = {f"{prefix}{name}": _File(f"{prefix}{name}", plan, in_tree) for name in LEAF_FILES}
    blocks_name = f"{prefix}{blocks_file(plan.package)}"
    files[pipeline_file] = _File(pipeline_file, plan, in_tree)
    files[blocks_name] = _File(blocks_name, plan, in_tree)
    if not prefix:
        files["__init__.py"] = _File("__init__.py", plan, in_tree)

    package_names: dict[str, str] = {
        plan.pipeline_class_name: pipeline_file,
        EXPLICIT_NONE_NAME: pipeline_file,
        PACKAGE_BLOCKS_NAME: pipeline_file,
        "install_standard_guider": pipeline_file,
        PERTURBED_ATTENTION_GUIDER: pipeline_file,
        GUIDER_RUNS_UNCONDITIONAL: pipeline_file,
        SAVED_WITH_PACKAGE_NAME: pipeline_file,
        REGISTER_IN_DIFFUSERS_NAME: pipeline_file,
    }
    built: dict[str, str] = {}
    for sub in plan.sub_pipelines:
        # each pipeline this one builds is a package of its own, its modules beside these ones
        inner = prefix + sub.prefix
        built.update(emit_package(sub.plan, sub.source_text, sub.generator, in_tree, inner))
        package_names[sub.plan.blocks_class_name] = f"{inner}{blocks_file(sub.plan.package)}"
    for block in plan.blocks:
        add_block(files[prefix + block.file], plan, block, package_names)
    pipeline = pipeline_class(plan, prefix)
    files[pipeline_file].body = pipeline.statements
    files[pipeline_file].add_bodies(pipeline.bodies)

    constant = _blocks_constant(plan)
    entries = "".join(f"        ({block.key!r}, {block.class_name}),\n" for block in plan.blocks)
    description = f"Blocks converted from `{plan.class_name}`, in the order its `__call__` runs them."
    built_modules = ""
    if plan.sub_pipelines and not prefix:
        # `ModularPipeline.from_pretrained` copies only the modules the blocks module imports itself
        held = _built_classes(plan, "")
        package_names.update(held)
        names = "".join(f"    {name},\n" for name in held)
        built_modules = (
            "# the classes of the pipelines this one builds, one per module of theirs: diffusers' loader copies the\n"
            "# modules a saved pipeline's blocks module imports, and only those\n"
            f"BUILT_PIPELINE_CLASSES = (\n{names})\n\n"
        )
    files[blocks_name].body = splice(
        f"{built_modules}{constant} = InsertableDict(\n    [\n{entries}    ]\n)\n\n\n"
        f"class {plan.blocks_class_name}({PACKAGE_BLOCKS_NAME}, SequentialPipelineBlocks):\n"
        f"    model_name = {plan.model_name!r}\n"
        f"    modular_pipeline_class = {plan.pipeline_class_name}\n"
        f"    block_classes = list({constant}.values())\n"
        f"    block_names = list({constant}.keys())\n\n"
        "    @property\n"
        "    def description(self) -> str:\n"
        f"        return {description!r}\n\n\n"
        f"{REGISTER_IN_DIFFUSERS_NAME}({plan.pipeline_class_name}, {plan.blocks_class_name})\n",
        {},
    )
    package_names[constant] = blocks_name
    package_names[plan.blocks_class_name] = blocks_name
    exported = sorted([constant, plan.blocks_class_name, plan.pipeline_class_name])
    init_lines = (
        f"from .{blocks_name[:-3]} import {constant}, {plan.blocks_class_name}\n"
        f"from .modular_pipeline import {plan.pipeline_class_name}\n\n"
        f"__all__ = {exported!r}\n"
    )
    if not prefix:
        files["__init__.py"].body = list(cst.parse_module(init_lines).body)
        files["__init__.py"].docstring = f"Modular pipeline blocks converted from {plan.class_name}."

    for name in LEAF_FILES:
        if not files[prefix + name].body:
            files[prefix + name].docstring = f"{plan.class_name} has no stage that belongs in {name}."

    # every file rendered first, then all formatted by one formatter run
    bodies = format_files({name: files[name].render(package_names, plan.module_definitions) for name in sorted(files)})
    return {
        **{
            name: with_header(body, plan.source_label, plan.class_name, source_text, generator)
            for name, body in bodies.items()
        },
        **built,
    }
