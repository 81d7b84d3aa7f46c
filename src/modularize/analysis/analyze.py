"""Analyze pass: `SourceModule` -> `PipelinePlan`.

The order matters and is the whole algorithm:

1. read the class (`class_facts`), split `__call__` into stages (`segment`);
2. locate what goes (`strip_runtime`), how CFG is batched (`guidance`), inputs that cannot be served
   (`feature_gates`) and per-call state assignments: all as replacements keyed by nodes of the original tree, so
   errors still point at source lines;
3. rewrite each stage's statements once (replacements, callbacks -> None, `self` -> `components`);
4. def-use analysis over the rewritten statements gives every block's inputs and outputs;
5. collect helpers, components, derived attributes and module-level dependencies each block needs.
"""

from __future__ import annotations

import builtins
import symtable
from collections.abc import Iterator, Sequence
from dataclasses import replace

import libcst as cst
import libcst.matchers as m

from ..cst.dataflow import Flow, flow_of, names_read, without_dead_assignments
from ..cst.match_filter import matches
from ..cst.node_index import NodeIndex
from ..cst.substitute import (
    conjuncts,
    replace_nodes,
    replace_with_origins,
    same_expression,
    substitute_names,
)
from ..cst.tree_walk import findall, remembered, walk
from ..errors import ConversionError
from ..frontend.class_facts import ClassFacts, Parameter, analyze_class
from ..frontend.docstrings import parameter_descriptions
from ..frontend.module_definitions import module_definitions
from ..frontend.parse import SourceModule, code, find_pipeline_class, snippet
from ..kinds import CfgKind, DefinitionKind, GuidancePattern, StageKind
from ..normalize.branch_assignments import as_conditional_expressions, branch_assignments
from ..normalize.cache_scope import narrowed, wide_cache_scopes
from ..normalize.cfg_condition import InlineCfgCondition, with_named_condition
from ..normalize.clashing_locals import ClashingLocals, renamable, with_renamed_locals
from ..normalize.computed_cat_part import ComputedCatPart, with_named_part
from ..normalize.early_return import EarlyReturnProblem, is_constant, lower_early_return
from ..normalize.halved_results import HelperDoublesResults, with_halved_results
from ..normalize.image_encode import (
    ENCODER_KEY,
    IMAGE_LATENTS,
    ImageEncodeSplit,
    NotSplit,
    split_image_encode,
    with_image_encode,
)
from ..normalize.outside_helper_gate import HelperOutsideTheFile, with_branch_raising
from ..normalize.own_class import with_own_members_on_self
from ..normalize.perturbed_attention import without_perturbed_attention
from ..normalize.progress_scope import moved_out, progress_scopes
from ..normalize.rederived_attributes import without_rederived_attributes
from ..normalize.repeated_assignment import repeated_assignments
from ..planning.denoise_loop import split_loop
from ..planning.naming import Naming, block_key
from ..planning.pipeline_class import pipeline_class_plan
from ..planning.plan import (
    PERTURBED_ATTENTION_GUIDER,
    PERTURBED_BATCH,
    BlockPlan,
    Component,
    GuidancePlan,
    LoopPlan,
    ModuleDefinition,
    Output,
    Param,
    PerturbedAttentionPlan,
    PipelinePlan,
    SubPipelinePlan,
)
from ..transforms.feature_gates import FeatureGate, gate_message, gate_replacements
from ..transforms.guidance import unbatching_replacements
from .guidance.batched import CfgPattern, condition_text, find_batched_cfg
from .guidance.branched import find_branched_cfg
from .guidance.perturbed_attention import PAG_MIXIN, PerturbedAttention, find_perturbed_attention
from .guidance.separate_passes import find_separate_cfg
from .rewrite_context import BLOCK_NAMES, Context, Rewritten, call_body, helpers_and_components, merged_usage
from .runtime_plumbing import find_runtime_plumbing
from .segment import Segment, find_timestep_loop, label_title, segment_call


def analyze(
    source: SourceModule, class_name: str | None = None, sub_pipelines: Sequence[SubPipelinePlan] = ()
) -> PipelinePlan:
    facts = analyze_class(source, find_pipeline_class(source, class_name))
    facts, body, origins = with_own_members_on_self(facts, call_body(facts))
    source = source.with_positions(origins)
    # `self.vae_scale_factor = 2 ** len(...)` again in `__call__` or a helper: what the generated pipeline derives
    facts, body, origins, rederived = without_rederived_attributes(facts, body)
    source = source.with_positions(origins)
    perturbed = find_perturbed_attention(source, facts, body)
    if perturbed is not None:
        # the guider perturbs attention: what is left is the pipeline's CFG (`normalize.perturbed_attention`)
        body, origins = without_perturbed_attention(body, perturbed)
        source = source.with_positions(origins)
        kept = tuple(s for s in facts.init.adaptation if s is not perturbed.layers_statement)
        bases = tuple(base for base in facts.bases if base != PAG_MIXIN)
        facts = replace(facts, bases=bases, init=replace(facts.init, adaptation=kept))
    # a guidance detector that finds `__call__` spelling its CFG in a shape it reads once rewritten asks for the
    # rewrite, and the analysis starts again; each rewrite removes what signalled it, so this ends
    raising: list[HelperOutsideTheFile] = []
    # a list of doubled values split where received (IP-Adapter embeddings) that the rest of `__call__` cannot pair
    # after all: the analysis starts again from before the split, and the input that feeds it raises instead
    before_list_split: tuple | None = None
    split_lists = True
    for _ in range(_MOST_RESTARTS + 2):
        try:
            plan = _analyze_call(source, facts, body, perturbed, tuple(raising), rederived, sub_pipelines, split_lists)
            return replace(plan, sub_pipelines=tuple(sub_pipelines))
        except ConversionError:
            if before_list_split is None:
                raise
            source, body, raising = before_list_split
            before_list_split, split_lists = None, False
            continue
        except _RESTARTS as found:
            if isinstance(found, HelperDoublesResults) and found.listed and before_list_split is None:
                before_list_split = (source, body, list(raising))
            flow = flow_of(body)
            taken = set(flow.reads) | set(flow.writes) | {p.name for p in facts.call_parameters}
            if isinstance(found, InlineCfgCondition):
                # `if guidance_scale > 1.0:`: named, as most pipelines do
                body, origins = with_named_condition(facts, body, found.test, taken)
            elif isinstance(found, HelperOutsideTheFile):
                # `if self.free_noise_enabled: ... self._encode_prompt_free_noise(..., cfg)`: that branch raises
                body, origins = with_branch_raising(body, found)
                # (kept without its traceback: that holds this frame, whose `raising` would hold it, a cycle
                # keeping every tree of the failed attempt alive until the cyclic collector runs)
                raising.append(found.with_traceback(None))
            elif isinstance(found, ComputedCatPart):
                # `torch.cat([x, torch.zeros_like(x)])`: the part named
                body, origins = with_named_part(body, found, taken)
            elif isinstance(found, ClashingLocals):
                # `state = ...`: a local named like what blocks bind, renamed
                body, origins = with_renamed_locals(body, found.names, taken)
            else:
                # a helper returning `torch.cat([negative, x])`: split where it is received
                body, origins = with_halved_results(body, found, taken, source.positions)
            source = source.with_positions(origins)
    raise AssertionError(f"the analysis asked for more than {_MOST_RESTARTS} rewrites of `__call__`")


_RESTARTS = (InlineCfgCondition, HelperDoublesResults, ClashingLocals, HelperOutsideTheFile, ComputedCatPart)
_MOST_RESTARTS = 8  # an inline condition, a few helpers returning doubled batches, clashing locals


def _analyze_call(
    source: SourceModule,
    facts: ClassFacts,
    body: list[cst.BaseStatement],
    perturbed: PerturbedAttention | None,
    raising: Sequence[HelperOutsideTheFile] = (),
    rederived: Sequence[cst.SimpleStatementLine] = (),
    sub_pipelines: Sequence[SubPipelinePlan] = (),
    split_lists: bool = True,
) -> PipelinePlan:
    source, body = _with_progress_scopes(source, body)
    source, body = _with_narrow_cache_scopes(source, body)
    source, body = _without_repeated_assignments(source, body)
    source, body = _with_branch_assignments(source, body)
    segments = segment_call(source, body, frozenset(sub.attribute for sub in sub_pipelines))
    denoise = next((s for s in segments if s.kind == StageKind.DENOISE), None)
    if denoise is None:
        _check_loopless(source, facts, body)
    split = None
    if ".vae.encode(" in source.text:  # walking every method is not free; most pipelines encode no image
        before_loop = segments[: segments.index(denoise)] if denoise is not None else segments
        split = split_image_encode(facts, [s.statements for s in before_loop])
    if isinstance(split, ImageEncodeSplit):
        source, facts, body, segments = with_image_encode(source, facts, body, segments, split)
    unlowered = body
    source, body, segments = _without_early_returns(source, body, segments)
    naming = Naming.of_pipeline(facts.name)
    context = Context(source, facts, naming)
    _note_image_encode(context, split)
    for found in raising:
        context.note("raises", found.branch, f"`if {snippet(found.branch.test)}:`", found.message, "unsafe")
    for line in rederived:
        why = "derives again what `__init__` derived from the components: the generated pipeline's property"
        context.note("dropped", line, f"`{snippet(line)}`", why, "safe")
    loop = find_timestep_loop(denoise.loop) if denoise is not None else None

    drops, returns = find_runtime_plumbing(body)
    for drop in drops:
        context.replacements[drop.node] = cst.RemoveFromParent()
        context.note("dropped", drop.node, drop.what, drop.why, drop.safety)
    dropped = {id(drop.node) for drop in drops}
    for argument in _variadic_handed_to_built_pipelines(facts, body, sub_pipelines):
        # `self.decoder_pipe(..., **kwargs)`: what `**kwargs` takes (the deprecated callbacks) is not served here
        context.replacements[argument] = cst.RemoveFromParent()
        why = "a built pipeline's call takes only the named arguments: extra keywords are not handed on"
        context.note("dropped", argument, f"`**{code(argument.value).strip()}`", why, "unsafe")
        dropped.add(id(argument))
    outputs = _output_fields(source, returns)
    for field_name, value in _constant_output_fields(returns):
        why = "a constant, not something a block computes: the modular pipeline has no such output"
        context.note("dropped", value, f"output `{field_name}={snippet(value)}`", why, "safe")

    index = NodeIndex(body)
    cfg = None
    if loop is not None:  # (a pipeline without a denoising loop has no guidance to find)
        cfg = find_separate_cfg(source, facts, body, loop, dropped)
        if cfg is None:
            cfg = find_branched_cfg(source, facts, body, loop, dropped)
        if cfg is None:
            cfg = find_batched_cfg(source, facts, body, denoise.loop, loop, dropped, index, split_lists)
    if cfg is not None and perturbed is not None:
        # the guider's perturbed batch runs last in a merged call: the PAG processors perturb the last share
        cfg = replace(cfg, batch_order=(*cfg.batch_order, PERTURBED_BATCH))
        _note_perturbed_attention(context, perturbed)
    if cfg is None:
        context.reserved_names = BLOCK_NAMES
    _check_reserved_names(source, facts, body, context.reserved_names)
    _check_kept_attributes(source, facts, body)
    _check_undefined_reads(source, facts, unlowered)  # the source as written, before early returns are lowered
    _check_helper_arguments(source, facts, unlowered)
    if cfg is not None:
        context.condition_name = cfg.condition_name
        context.replacements.update(unbatching_replacements(cfg))
        context.replacements.update(dict(cfg.rewrites))
        _note_guidance(context, cfg)
        gates = _feature_gates(context, body[: body.index(denoise.loop)], cfg, index)
        gates += _guard_gates(context, cfg, index)
        for gate in gates:
            context.replacements.update(gate_replacements(gate, index))
    else:
        gates = []
    _per_call_assignments(context, body, dropped, index)

    blocks: list[BlockPlan | LoopPlan] = []
    rewritten: list[tuple[Segment, Rewritten]] = []
    for segment in segments:
        if segment.kind == StageKind.DENOISE:
            rewritten.append((segment, Rewritten([])))
            continue
        result = context.rewrite(segment.statements)
        if result.body:  # a stage made only of runtime plumbing disappears
            rewritten.append((segment, result))
    segments = [segment for segment, _ in rewritten]
    _check_loop_exits(context, segments, denoise, loop)
    loop_parts = split_loop(context, denoise, loop, cfg) if denoise is not None else None

    call_parameters = {p.name: p for p in facts.call_parameters if not p.star}
    variables = set(call_parameters)
    for _, result in rewritten:
        variables |= set(flow_of(result.body).writes)
    loop_rewritten = loop_parts.rewritten if loop_parts is not None else []
    variables |= loop_parts.writes if loop_parts is not None else set()
    variables -= context.reserved_names
    _check_locals_left_undefined(source, body, [r for _, r in rewritten] + loop_rewritten, variables, denoise)

    flows = _flows(rewritten, loop_parts, variables)
    # plain assignments nothing reads any more (they fed CFG code the guider replaced) go, then flows again
    returned = {local for _, local in outputs}
    for index, (segment, result) in enumerate(rewritten):
        if segment.kind != StageKind.DENOISE:
            live = _reaching_reads(flows[index].writes, flows[index + 1 :]) | returned
            result.body, dead = without_dead_assignments(result.body, live)
            for statement in dead:
                what = f"`{snippet(statement)}`"
                context.note("dropped", None, what, "nothing reads it once guidance is the guider's", "safe")
    _check_variadic_reads(source, facts, body, [r for _, r in rewritten] + loop_rewritten, dropped)
    flows = _flows(rewritten, loop_parts, variables)

    # a returned local is an output of the pipeline only as written by the last block that writes it
    # an early return lowered into assignments (`else: image = latents`) assigns the returned locals itself
    assigned = set(flow_of(unlowered).writes) if body is not unlowered else None
    _check_returned(source, returns, outputs, flows, call_parameters, assigned)
    last_writer = {local: max(i for i, f in enumerate(flows) if local in f.writes) for _, local in outputs}
    descriptions = parameter_descriptions(facts.call_docstring)
    if isinstance(split, ImageEncodeSplit):
        descriptions.setdefault(
            IMAGE_LATENTS,
            f"The VAE-encoded image. To start from latents encoded elsewhere, leave out the `{ENCODER_KEY}` block "
            "and pass them in.",
        )
    keys = _unique_keys(segments)
    produced_by: dict[str, str] = {}
    for index, ((segment, result), flow) in enumerate(zip(rewritten, flows, strict=True)):
        later_reads = _reaching_reads(flow.writes, flows[index + 1 :])
        key = keys[index]
        final_here = {local for local, writer in last_writer.items() if writer == index}
        block_outputs = [n for n in flow.writes if n in later_reads or n in final_here]
        needed = list(flow.reads) + [n for n in block_outputs if n not in flow.definite and n not in flow.reads]
        inputs, unbound = [], []
        for name in needed:
            if name in produced_by or name in call_parameters:
                inputs.append(_param(name, produced_by.get(name), call_parameters, descriptions))
            elif name in block_outputs and name not in final_here:
                unbound.append(name)
            elif name in flow.writes:
                # written here on some paths only and read where it may be unset (`if ...: prompt_image = image`,
                # read below), or returned (`else: images = ...`, then `return (images,)`): the verbatim code fails
                # exactly where the source does, so nothing is bound for it
                continue
            else:
                raise source.refuse(
                    segment.statements[0], f"`{name}` is read in stage {segment.label!r} but never defined before it"
                )
        output_params = tuple(
            _output(name, outputs if name in final_here else [], descriptions) for name in block_outputs
        )
        for name in block_outputs:
            produced_by[name] = key
        if segment.kind == StageKind.DENOISE:
            blocks.append(loop_parts.plan(context, key, segment, tuple(inputs), set(later_reads) | final_here))
        else:
            blocks.append(_block_plan(context, key, segment, result, tuple(inputs), output_params, tuple(unbound)))

    guidance = _guidance_plan(context, cfg, call_parameters, descriptions, perturbed)
    used_kinds = merged_usage([r for _, r in rewritten] + loop_rewritten)
    pipeline = pipeline_class_plan(context, blocks, used_kinds, cfg, sub_pipelines)
    components = _components(context, blocks)
    block_inputs = [p for b in blocks for p in b.inputs]
    block_inputs += [p for b in blocks if isinstance(b, LoopPlan) for step in b.steps for p in step.inputs]
    block_arguments = tuple(
        name for name in call_parameters if any(p.name == name and p.producer is None for p in block_inputs)
    )
    guider_arguments = {p.name for p in guidance.arguments}
    distilled = _distilled(cfg, guidance.scale, call_parameters, block_arguments)
    if distilled:
        guidance = replace(guidance, distilled=distilled)
    # an argument no block takes is one the package cannot serve (it raises unless left at its default), unless the
    # standard call ignores it too: it never reads it, or overwrites it first (`num_videos_per_prompt = 1`)
    read_by_call = set(flow_of(call_body(facts)).reads)
    not_taken = [
        name
        for name in call_parameters
        if name not in block_arguments and name not in guider_arguments and name != "return_dict"
    ]
    popped = [drop.popped for drop in drops if drop.popped]
    # the deprecated `callback_steps` says how often `callback` runs: nothing without it, and `callback` raises
    interval = [name for name in popped if name == "callback_steps" and "callback" in popped]
    popped = [name for name in popped if name not in interval]
    ignored = tuple(name for name in not_taken if name not in read_by_call and name not in popped) + tuple(interval)
    unserved = tuple(
        (name, call_parameters[name].default or "None") for name in not_taken if name not in ignored
    ) + tuple((name, "None") for name in popped)
    for gate in gates:
        context.note("raises", gate.statement, " / ".join(f"`{n}`" for n in gate.inputs), gate.message, "unsafe")
    definitions = module_definitions(source, facts)
    return PipelinePlan(
        source_label=source.label,
        source_module=source.module_name,
        class_name=facts.name,
        class_location=source.location(facts.node),
        model_name=naming.model_name,
        prefix=naming.prefix,
        package=naming.package,
        blocks=tuple(blocks),
        components=components,
        guidance=guidance,
        pipeline=pipeline,
        call_arguments=tuple(_param(n, None, call_parameters, descriptions) for n in call_parameters),
        block_arguments=block_arguments,
        unserved_arguments=unserved,
        ignored_arguments=ignored,
        outputs=tuple((field_name, field_name) for field_name, _ in outputs),
        module_definitions=definitions,
        notes=tuple(context.notes),
        output_class=_output_class(returns, definitions),
    )


def _with_progress_scopes(
    source: SourceModule, body: Sequence[cst.BaseStatement]
) -> tuple[SourceModule, list[cst.BaseStatement]]:
    """What a progress bar's block holds besides the denoising loop, moved out (`normalize.progress_scope`)."""
    replacements = {}
    for block in progress_scopes(body):
        statements = moved_out(block)
        if statements is not None:
            replacements[block] = cst.FlattenSentinel(statements)
    # (the block holding the loop stands where the block stood)
    origins = {
        statement: block
        for block, flattened in replacements.items()
        for statement in flattened.nodes
        if isinstance(statement, cst.With)
    }
    return _rewritten(source, body, replacements, origins)


def _without_repeated_assignments(
    source: SourceModule, body: Sequence[cst.BaseStatement]
) -> tuple[SourceModule, list[cst.BaseStatement]]:
    """Assignments repeating an earlier one dropped (`normalize.repeated_assignment`)."""
    return _rewritten(source, body, {line: cst.RemoveFromParent() for line in repeated_assignments(body)})


def _with_narrow_cache_scopes(
    source: SourceModule, body: Sequence[cst.BaseStatement]
) -> tuple[SourceModule, list[cst.BaseStatement]]:
    """Cache-context blocks narrowed to the model call (`normalize.cache_scope`)."""
    replacements = {block: cst.FlattenSentinel(narrowed(block)) for block in wide_cache_scopes(body)}
    # (the narrowed block stands where the block stood)
    return _rewritten(source, body, replacements, {new.nodes[0]: old for old, new in replacements.items()})


def _rewritten(
    source: SourceModule,
    body: Sequence[cst.BaseStatement],
    replacements: dict[cst.CSTNode, cst.CSTNode | cst.RemovalSentinel | cst.FlattenSentinel],
    origins: dict[cst.CSTNode, cst.CSTNode] | None = None,
) -> tuple[SourceModule, list[cst.BaseStatement]]:
    """`body` with a normalization's replacements, and the source knowing where each new node came from."""
    if not replacements:
        return source, list(body)
    body, found = replace_with_origins(body, replacements)
    return source.with_positions({**found, **(origins or {})}), body


def _with_branch_assignments(
    source: SourceModule, body: Sequence[cst.BaseStatement]
) -> tuple[SourceModule, list[cst.BaseStatement]]:
    """The loop's input branches written as conditional expressions (`normalize.branch_assignments`)."""
    written = {branch: as_conditional_expressions(branch) for branch in branch_assignments(body)}
    replacements = {b: cst.FlattenSentinel([new for new, _ in pairs]) for b, pairs in written.items()}
    origins = {}
    for pairs in written.values():
        for statement, on in pairs:
            origins[statement] = on
            origins[statement.body[0]] = on.body[0]
            origins[statement.body[0].value] = on.body[0].value
    return _rewritten(source, body, replacements, origins)


def _without_early_returns(
    source: SourceModule, body: list[cst.BaseStatement], segments: list[Segment]
) -> tuple[SourceModule, list[cst.BaseStatement], list[Segment]]:
    """Lower early returns after the loop (`else: return Output(images=latents)`) into the outputs they return; the
    stages after one become part of its stage (they run in the other branch now)."""
    kinds = [s.kind for s in segments]
    # (without a denoising loop, a return anywhere may be early: VisualCloze returns before upsampling)
    first = kinds.index(StageKind.DENOISE) + 1 if StageKind.DENOISE in kinds else 0
    returns = [r for segment in segments[first:] for s in segment.statements for r in findall(s, m.Return())]
    outputs = dict(_output_fields(source, returns)) if returns else {}
    # the final return's constant fields (`audio=None`) stand for no local; early returns may give constants there
    constants = {name: "" for name, _ in _constant_output_fields(returns)}
    outputs = {**constants, **outputs} if not constants else _in_final_order(returns, {**constants, **outputs})
    index, handled = first, ()
    while index < len(segments):
        lowered = lower_early_return(segments[index].statements, outputs, handled)
        if lowered is None:
            index += 1
            continue
        if isinstance(lowered, EarlyReturnProblem):
            raise source.refuse(lowered.node, lowered.reason)
        merged = [s for segment in segments[index:] for s in segment.statements]
        lowered = lower_early_return(merged, outputs, handled)
        source = source.with_positions({lowered.new: lowered.old})
        body = [*body[: body.index(lowered.old)], lowered.new]
        segments = [*segments[:index], replace(segments[index], statements=tuple(lowered.statements))]
        handled = (*handled, *lowered.handled)
    return source, body, segments


_NESTED_SCOPES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)
_FUNCTION = m.FunctionDef()
_BUILTINS = frozenset(dir(builtins)) | {"__file__", "__name__", "__doc__"}


def _check_undefined_reads(source: SourceModule, facts, body: Sequence[cst.BaseStatement]) -> None:
    """A name `__call__` reads that nothing binds (not `__call__`, not the module, not a builtin): the source fails
    there with a `NameError`, so its blocks would too; refused where it is first read. The decorators of the
    class's methods too (`@functools.cache` without `import functools` fails when the module is imported)."""
    module_names = remembered("module names", source.tree, lambda _: _module_names(source))
    if module_names is None:
        return  # `from x import *`: what it binds is not known here
    class_names = set(facts.methods) | set(facts.properties) | set(facts.class_attributes)
    for function in findall(facts.node.body, _FUNCTION):  # (`def`s are statements: the class's, nested ones too)
        for decorator in function.decorators:
            for node in _variable_names(decorator.decorator):
                if node.value not in module_names | class_names | _BUILTINS:
                    raise source.refuse(node, f"`{node.value}` is read, but the module does not define or import it")
    _check_undefined_reads_in_helpers(source, facts, body, module_names)
    flow = flow_of(body)
    known = module_names | set(flow.writes) | {p.name for p in facts.call_parameters} | _BUILTINS | {"self"}
    undefined = [name for name in flow.reads if name not in known]
    if not undefined:
        return
    name = undefined[0]
    for statement in body:
        for node in _variable_names(statement):
            if node.value == name:
                raise source.refuse(node, f"`{name}` is read, but neither `__call__` nor the module defines it")
    raise source.refuse(facts.call, f"`{name}` is read, but neither `__call__` nor the module defines it")


def _check_undefined_reads_in_helpers(
    source: SourceModule, facts, body: Sequence[cst.BaseStatement], module_names: set[str]
) -> None:
    """The same for the methods `__call__` reaches (`self.embed(...)`, and what they call): a name one reads that
    neither it nor the module binds fails there with a `NameError`, in the standard pipeline and in the package
    that copies the method alike; refused where the method reads it. What a method reads as a global is the
    compiler's own scope analysis (`symtable`, at C speed) of the source as written."""
    self_attribute = m.Attribute(value=m.Name("self"), attr=m.Name())
    reached: list[str] = []
    pending: list[Sequence[cst.CSTNode]] = [body]
    while pending:
        for statement in pending.pop():
            for node in findall(statement, self_attribute):
                name = node.attr.value
                if name in facts.methods and name not in reached and name != "__call__":
                    reached.append(name)
                    pending.append([facts.methods[name].body])
    if not reached:
        return
    try:
        # (the source as written: one table for every start of the analysis, for every class of the module)
        module = remembered("symbol table", source.tree, lambda _: symtable.symtable(source.text, source.path, "exec"))
        tables = _method_tables(module, facts.name)
    except SyntaxError:  # (parsed already: not expected)
        return
    for name in reached:
        read = {
            symbol.get_name()
            for table in tables.get(name, ())
            for symbol in table.get_symbols()
            if symbol.is_referenced() and symbol.is_global() and not symbol.is_declared_global()
        }
        undefined = sorted(read - module_names - _BUILTINS)
        if undefined:
            method = facts.methods[name]
            nodes = [node for node in _variable_names(method.body) if node.value == undefined[0]]
            raise source.refuse(
                nodes[0] if nodes else method,
                f"`{undefined[0]}` is read in `{name}`, but neither `{name}` nor the module defines it",
            )


def _method_tables(module: symtable.SymbolTable, class_name: str) -> dict[str, list[symtable.SymbolTable]]:
    """Per method name of the class, its symbol table and those of the functions nested in it."""
    found: dict[str, list[symtable.SymbolTable]] = {}
    for table in module.get_children():
        if table.get_type() == "class" and table.get_name() == class_name:
            for method in table.get_children():
                stack = [method]
                while stack:
                    current = stack.pop()
                    found.setdefault(method.get_name(), []).append(current)
                    stack.extend(current.get_children())
    return found


def _check_helper_arguments(source: SourceModule, facts, body: Sequence[cst.BaseStatement]) -> None:
    """A helper method `__call__` calls with a keyword it has no parameter for, or with more positional arguments
    than it takes: the source raises `TypeError` there (EasyAnimate Control's `encode_prompt(...,
    text_encoder_index=0)`), so its blocks would too; refused at the argument."""
    for statement in body:
        for call in findall(statement, m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name()))):
            helper = facts.methods.get(call.func.attr.value)
            if helper is None or helper.decorators:
                continue  # a decorator may change what the method accepts
            params = helper.params
            if isinstance(params.star_kwarg, cst.Param):
                continue
            named = {p.name.value for p in (*params.params, *params.kwonly_params)}
            positional = [p for p in (*params.posonly_params, *params.params) if p.name.value != "self"]
            taken = 0
            for arg in call.args:
                if arg.star:
                    break  # `*args` / `**kwargs` at the call: what they hold is not known here
                if arg.keyword is None:
                    taken += 1
                    if taken > len(positional) and not isinstance(params.star_arg, cst.Param):
                        raise source.refuse(
                            arg, f"`{helper.name.value}` takes {len(positional)} positional arguments, more are given"
                        )
                elif arg.keyword.value not in named:
                    raise source.refuse(
                        arg, f"`{helper.name.value}` has no parameter `{arg.keyword.value}`: the call raises TypeError"
                    )


def _variable_names(node: cst.CSTNode) -> Iterator[cst.Name]:
    """The `Name` nodes below `node` that stand for variables, in source order: not the attribute of an
    `Attribute` (`functools.cache` -> `functools` only) nor the keyword of an argument."""
    not_variables: set[int] = set()
    for found in walk(node):
        if isinstance(found, cst.Attribute):
            not_variables.add(id(found.attr))
        elif isinstance(found, cst.Arg) and found.keyword is not None:
            not_variables.add(id(found.keyword))
        elif isinstance(found, cst.Name) and id(found) not in not_variables:
            yield found


def _module_names(source: SourceModule) -> set[str] | None:
    """Every name the module binds at its top level (imports, definitions, assignments); None after an
    `import *`, whose names are not known."""
    names: set[str] = set()
    for statement in source.tree.body:
        if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
            names.add(statement.name.value)
            continue
        for node in walk(statement, skip=lambda n: type(n) in _NESTED_SCOPES):
            if type(node) is cst.ImportStar:
                return None
            if type(node) is cst.ImportAlias:
                bound = node.asname.name if node.asname else node.name
                while isinstance(bound, cst.Attribute):
                    bound = bound.value
                if isinstance(bound, cst.Name):
                    names.add(bound.value)
        names.update(flow_of([statement]).writes)
    return names


def _check_variadic_reads(
    source: SourceModule, facts, body: Sequence[cst.BaseStatement], rewritten: Sequence[Rewritten], dropped: set[int]
) -> None:
    """`if "mask_feature" in kwargs:` left in a block: a block receives named inputs only, never `__call__`'s
    `**kwargs` / `*args` (reads of them that go with the deprecated callbacks are dropped before this)."""
    variadic = {p.name for p in facts.call_parameters if p.star}
    kept = {name for result in rewritten for statement in result.body for name in names_read(statement)} & variadic
    if not kept:
        return
    for statement in body:
        for node in walk(statement, skip=lambda n: id(n) in dropped):
            if isinstance(node, cst.Name) and node.value in kept:
                raise source.refuse(
                    node,
                    f"`__call__` reads its variadic parameter `{node.value}` here; a modular block receives named"
                    " inputs only",
                    fix=f"read a named `__call__` argument instead of `{node.value}`",
                )
    raise source.refuse(facts.call, f"`__call__` reads its variadic parameter `{sorted(kept)[0]}`")


def _variadic_handed_to_built_pipelines(
    facts: ClassFacts, body: Sequence[cst.BaseStatement], sub_pipelines: Sequence[SubPipelinePlan]
) -> list[cst.Arg]:
    """The `**kwargs` arguments (`__call__`'s own variadic keywords) of calls of pipelines `__init__` built."""
    variadic = {p.name for p in facts.call_parameters if p.star == "**"}
    built = m.OneOf(*(m.Name(sub.attribute) for sub in sub_pipelines)) if sub_pipelines else None
    if not variadic or built is None:
        return []
    calls = [c for statement in body for c in findall(statement, m.Call(func=m.Attribute(m.Name("self"), built)))]
    return [
        a for c in calls for a in c.args if a.star == "**" and matches(a.value, m.Name()) and a.value.value in variadic
    ]


def _check_loopless(source: SourceModule, facts: ClassFacts, body: Sequence[cst.BaseStatement]) -> None:
    """A `__call__` without a denoising loop is a pipeline of plain blocks (an image encoder and an embedder, a
    latent upsampler, a call of other pipelines) only if it does not denoise elsewhere: a component stepped or given
    timesteps (`self.scheduler.step(...)`, `.set_timesteps(...)`) by `__call__` or a helper, or a call handed to a
    base class, means the denoising is in code no block can split."""
    delegated = next(iter(findall(facts.call.body, m.Call(m.Attribute(m.Call(m.Name("super")), m.Name())))), None)
    if delegated is not None:
        raise source.refuse(
            delegated,
            "no denoising loop in `__call__` (a loop over `timesteps`, or one whose body steps a scheduler): it "
            "hands the call to a base class, whose code is not in this file",
        )
    component = m.Attribute(m.Name("self"), m.Name(m.MatchIfTrue(lambda name: name in facts.init.components)))
    stepped = m.Call(func=m.Attribute(component, m.Name("step") | m.Name("set_timesteps")))
    for function in (facts.call, *facts.methods.values()):
        for node in findall(function, stepped):
            where = "`__call__`" if function is facts.call else f"`{function.name.value}`"
            raise source.refuse(
                body[0] if body else facts.call,
                "no denoising loop in `__call__` (a loop over `timesteps`, or one whose body steps a scheduler), "
                f"yet {where} calls `self.{node.func.value.attr.value}.{node.func.attr.value}`: the denoising happens "
                "where no block can split it",
            )


def _check_loop_exits(
    context: Context, segments: Sequence[Segment], denoise: Segment | None, loop: cst.For | None
) -> None:
    """Code the blocks keep must not leave the denoising loop's step or `__call__` early: the step is split into
    sub-blocks (a `continue` or `break` in one cannot skip the others) and blocks do not return."""
    dropped = context.replacements

    def skip(node: cst.CSTNode, loops: bool) -> bool:
        if node in dropped and not matches(node, m.SimpleStatementLine(body=[m.Return()])):
            return True  # dropped with the runtime plumbing (`if self.interrupt: continue`); returns are looked at
        return type(node) in _NESTED_SCOPES or (loops and type(node) in (cst.For, cst.While))  # (final classes)

    for statement in loop.body.body if loop is not None else ():
        for node in walk(statement, skip=lambda n: skip(n, loops=True)):
            if isinstance(node, (cst.Continue, cst.Break)):
                word = "continue" if isinstance(node, cst.Continue) else "break"
                raise context.source.refuse(
                    node,
                    f"`{word}` in the denoising loop: each step runs as separate blocks, which cannot skip the rest "
                    "of the step or end the loop",
                )
    # (without a denoising loop, every return was lowered into the outputs it returns, or refused, as returns after
    # the loop are: `_without_early_returns`)
    first_after = segments.index(denoise) + 1 if denoise is not None else 0
    for segment in segments[:first_after]:
        for statement in segment.statements:
            for node in walk(statement, skip=lambda n: skip(n, loops=False)):
                if isinstance(node, cst.Return):
                    raise context.source.refuse(
                        node,
                        "a `return` before the pipeline's outputs are computed: blocks cannot end the pipeline early",
                    )


def _flows(rewritten: list[tuple[Segment, Rewritten]], loop_parts, variables: set[str]) -> list[Flow]:
    flows = []
    for segment, result in rewritten:
        if segment.kind == StageKind.DENOISE:
            flows.append(loop_parts.flow(variables))
        else:
            flow = flow_of(result.body)
            flows.append(Flow(tuple(n for n in flow.reads if n in variables), flow.writes, flow.definite))
    return flows


def _reaching_reads(written: Sequence[str], later: Sequence[Flow]) -> set[str]:
    """The written names some later block reads before a block in between overwrites them on every path."""
    reached = set()
    for name in written:
        for flow in later:
            if name in flow.reads:
                reached.add(name)
                break
            if name in flow.definite:
                break
    return reached


def _check_locals_left_undefined(
    source: SourceModule,
    body: Sequence[cst.BaseStatement],
    parts: Sequence[Rewritten],
    variables: set[str],
    denoise: Segment | None,
) -> None:
    """A local of `__call__` the generated code reads but no block defines any more: its only definition became an
    error (a feature the package gates, an IP-Adapter's embeddings) while a read under another test stayed."""
    call_locals = set(flow_of(list(body)).writes)
    for part in parts:
        for name in flow_of(part.body).reads:
            if name in call_locals and name not in variables:
                raise source.refuse(
                    denoise.loop if denoise is not None else body[0],
                    f"`{name}` is read, but what defined it in `__call__` is turned into an error in this package "
                    "(a feature it does not serve), and the read is not under the same test",
                )


def _check_kept_attributes(source: SourceModule, facts, body: Sequence[cst.BaseStatement]) -> None:
    """`self.x = ...` in `__call__` or a helper, over `__init__`'s `self.x = <expr>`: a value the pipeline keeps
    from call to call. One `__init__` sets to a constant (a cache, a warn-once flag) is a class attribute of the
    generated pipeline (`pipeline_class`), which the assignment shadows per instance, as the source's does; one
    computed from the components is a property there (no setter): refused."""
    for name in facts.kept_attributes:
        if not is_constant(facts.init.derived[name]):
            raise source.refuse(
                facts.init.derived[name],
                f"`self.{name}` is set up by `__init__` from its arguments and assigned again later: a value the "
                "pipeline keeps from call to call, which a generated pipeline computes from its components instead",
            )


def _check_reserved_names(
    source: SourceModule, facts, body: Sequence[cst.BaseStatement], reserved: frozenset[str]
) -> None:
    """Generated blocks bind `components`, `state`, `block_state`, ...; a source variable of that name would clash:
    an argument is refused, locals are renamed (`normalize.clashing_locals`, by starting the analysis again)."""
    clashing = reserved - {"self", "progress_bar"}
    for parameter in facts.call_parameters:
        if parameter.name in clashing:
            raise source.refuse(facts.call, f"`__call__` has an argument named `{parameter.name}`, a name blocks use")
    assigned = [name for name in flow_of(list(body)).writes if name in clashing]
    if not assigned:
        return
    if renamable(body, assigned):
        raise ClashingLocals(assigned)
    statement = next(s for s in body if assigned[0] in flow_of([s]).writes)
    raise source.refuse(
        statement,
        f"`__call__` assigns `{assigned[0]}`, a name generated blocks use themselves, and a function or import "
        "inside `__call__` binds it too",
        fix=f"rename `{assigned[0]}` in `__call__`",
    )


# -- outputs and parameters --------------------------------------------------------------------------------------
def _is_local(value: cst.BaseExpression) -> bool:
    return isinstance(value, cst.Name) and not is_constant(value)


def _output_call(value: cst.BaseExpression | None) -> bool:
    """`Output(images=image, nsfw_content_detected=None)`: keyword arguments that are locals or constants."""
    return (
        isinstance(value, cst.Call)
        and any(_is_local(a.value) for a in value.args)
        and all(a.keyword is not None and (_is_local(a.value) or is_constant(a.value)) for a in value.args)
    )


def _constant_output_fields(returns: Sequence[cst.Return]) -> list[tuple[str, cst.BaseExpression]]:
    """The constant fields of the output the final `return` builds (`nsfw_content_detected=None`)."""
    for statement in reversed(returns):
        if _output_call(statement.value):
            return [(a.keyword.value, a.value) for a in statement.value.args if is_constant(a.value)]
    return []


def _in_final_order(returns: Sequence[cst.Return], fields: dict[str, str]) -> dict[str, str]:
    """`fields` ordered as the final return names them (early tuple returns are matched by position)."""
    final = next(r for r in reversed(returns) if _output_call(r.value))
    return {a.keyword.value: fields[a.keyword.value] for a in final.value.args}


def _check_returned(
    source: SourceModule,
    returns: Sequence[cst.Return],
    outputs: Sequence[tuple[str, str]],
    flows: Sequence[Flow],
    call_parameters,
    assigned: set[str] | None,
) -> None:
    """Every returned local must be computed by some block (the pipeline's outputs are block outputs) and, when an
    early return was lowered into assignments, by the source itself."""
    for _, local in outputs:
        if any(local in flow.writes for flow in flows) and (assigned is None or local in assigned):
            continue
        node = next((n for r in reversed(returns) for n in findall(r, m.Name(local))), returns[-1])
        if local in call_parameters:
            raise source.refuse(
                node,
                f"`__call__` returns its argument `{local}` unchanged: blocks only output what they compute",
                fix=f"assign `{local}` where the pipeline computes it, or return a computed value",
            )
        raise source.refuse(node, f"`__call__` returns `{local}`, which it never assigns")


def _output_fields(source: SourceModule, returns: Sequence[cst.Return]) -> list[tuple[str, str]]:
    """`return Output(images=image, nsfw_content_detected=flag)` -> [("images", "image"), (...)]; constant fields
    (`nsfw_content_detected=None`) are left out."""
    for statement in reversed(returns):
        value = statement.value
        if _output_call(value):
            return [(a.keyword.value, a.value.value) for a in value.args if _is_local(a.value)]
        if _is_local(value):
            return [(value.value, value.value)]
        if isinstance(value, cst.Tuple) and value.elements and all(_is_local(e.value) for e in value.elements):
            return [(e.value.value, e.value.value) for e in value.elements]
    node = returns[-1] if returns else source.tree
    raise source.refuse(node, "cannot tell what `__call__` returns (expected `return Output(name=local, ...)`)")


def _output_class(returns: Sequence[cst.Return], definitions: Sequence[ModuleDefinition]) -> str | None:
    """`return KandinskyPriorPipelineOutput(image_embeds=...)` -> "diffusers.pipelines.kandinsky:Kandinsky...": the
    class the standard call returns, as a pipeline calling this one receives it (None: it returns no output class)."""
    final = next((r.value for r in reversed(returns) if _output_call(r.value)), None)
    if final is None or not isinstance(final.func, cst.Name):
        return None
    for definition in definitions:
        if final.func.value in definition.names:
            if definition.kind == DefinitionKind.IMPORT and isinstance(definition.node, cst.ImportFrom):
                return definition.origin
            if definition.kind == DefinitionKind.CLASS:
                module, _, name = definition.origin.rpartition(".")
                return f"{module}:{name}"
    return None


def _param(name: str, producer: str | None, call_parameters: dict[str, Parameter], descriptions) -> Param:
    if producer is None:
        parameter = call_parameters[name]
        return Param(name, parameter.annotation, parameter.default, descriptions.get(name, ""), None)
    return Param(name, None, None, f"Produced by the `{producer}` block.", producer)


def _output(name: str, outputs: list[tuple[str, str]], descriptions) -> Output:
    for field_name, local in outputs:
        if local == name:
            return Output(field_name, local, f"The pipeline's `{field_name}` output.")
    return Output(name, name, descriptions.get(name, ""))


def _unique_keys(segments: Sequence[Segment]) -> list[str]:
    keys: list[str] = []
    for segment in segments:
        base = segment.key or (
            "denoise" if segment.kind == StageKind.DENOISE else block_key(label_title(segment.label))
        )
        key, suffix = base, 2
        while key in keys:
            key, suffix = f"{base}_{suffix}", suffix + 1
        keys.append(key)
    return keys


def _note_image_encode(context: Context, split: ImageEncodeSplit | NotSplit | None) -> None:
    if isinstance(split, NotSplit):
        context.note("kept", split.node, "the VAE encode of the image", f"not a block of its own: {split.reason}")
    elif split is not None:
        helper = context.facts.methods[split.helper]
        what = f"`{split.helper}`"
        taken = "" if split.latents == IMAGE_LATENTS else f" as `{split.latents}`"
        why = (
            f"split in two: its VAE encode (`{split.encoder}`) is the `{ENCODER_KEY}` block, the rest takes "
            f"`{IMAGE_LATENTS}`{taken}"
        )
        context.note("rewritten", helper, what, why)
        origin = f"{context.origin}.{split.helper}"
        context.helper_headers[split.encoder] = f"Split from {origin} (its VAE encode) with self->components"
        context.helper_headers[split.helper] = f"Split from {origin} (after its VAE encode) with self->components"


# -- per-call state ----------------------------------------------------------------------------------------------
def _per_call_assignments(
    context: Context, body: Sequence[cst.BaseStatement], dropped: set[int], index: NodeIndex
) -> None:
    """`self._guidance_scale = guidance_scale` goes (the local is read instead); other assignments become locals
    when something still reads them, and go otherwise (`self._num_timesteps` only serves `pipe.num_timesteps`)."""
    facts = context.facts
    # locals of the per-call state kept code reads, through `self._x` or through a property over it
    attributes = _per_call_reads(body, dropped | {id(n) for n in context.replacements})
    read = {facts.per_call[a] for a in attributes if a in facts.per_call}
    pattern = m.SimpleStatementLine(
        body=[m.Assign(targets=[m.AssignTarget(target=m.Attribute(value=m.Name("self")))])]
    )
    for line in index.find(cst.SimpleStatementLine, pattern):
        if id(line) in dropped:
            continue
        attribute = line.body[0].targets[0].target.attr.value
        local = facts.per_call.get(attribute)
        if local is None:
            continue
        value = line.body[0].value
        if matches(value, m.Name(local)):
            context.replacements[line] = cst.RemoveFromParent()
            context.note("rewritten", line, f"`self.{attribute} = {local}`", f"per-call state, read as `{local}`")
        elif local in read:
            context.replacements[line] = line.with_changes(
                body=[line.body[0].with_changes(targets=[cst.AssignTarget(cst.Name(local))])]
            )
            context.note("rewritten", line, f"`self.{attribute} = ...`", f"per-call state, now the local `{local}`")
        else:
            context.replacements[line] = cst.RemoveFromParent()
            context.note(
                "dropped", line, f"`self.{attribute} = ...`", "per-call state nothing in the blocks reads", "safe"
            )


def _per_call_reads(body: Sequence[cst.BaseStatement], skip: set[int]) -> set[str]:
    """Locals of per-call state that kept code reads (through `self._x` or a property over it)."""
    found: set[str] = set()
    for statement in body:
        for node in walk(statement, skip=lambda node: id(node) in skip or type(node) is cst.AssignTarget):
            if type(node) is cst.Attribute and type(node.value) is cst.Name and node.value.value == "self":
                found.add(node.attr.value)
    return found


# -- guidance ----------------------------------------------------------------------------------------------------
def _note_guidance(context: Context, cfg: CfgPattern) -> None:
    for site in cfg.cat_sites:
        if site.single is not None:
            why = f"one batch's: `{site.target}` is a value both conditions share"
            context.note("rewritten", site.node, f"`{snippet(site.node)}`", why)
            continue
        context.note(
            "rewritten",
            site.node,
            f"`{site.target} = torch.cat([{', '.join(site.names)}])`",
            f"undone: the guider pairs ({', '.join((site.cond, site.uncond, *site.others))})",
        )
    for expansion in cfg.expansions:
        context.note("rewritten", expansion, f"`{snippet(expansion)}`", "undone: the guider runs one batch per call")
    if cfg.kind == CfgKind.SEPARATE:
        context.note(
            "rewritten",
            cfg.call_statement,
            f"`{snippet(cfg.call_statement)}`",
            "runs once per guider batch: " + ", ".join(f"`{f.cond}` / `{f.uncond}`" for f in cfg.fields),
        )
    whys = {
        CfgKind.SEPARATE: ["the guider runs the unconditional pass and combines the predictions"],
        CfgKind.BRANCHED: [
            "each guider batch runs the `else` branch (the inputs of one condition)",
            "the guider combines the predictions (this branch, verbatim, in its subclass)",
        ],
    }.get(cfg.kind, ["the guider combines the predictions"] * len(cfg.guidance_statements))
    for statement, why in zip(cfg.guidance_statements, whys, strict=True):
        context.note("rewritten", statement, f"`{snippet(statement)}`", why)
    for branch, why in cfg.batch_rewrites:
        context.note("rewritten", branch, f"`{snippet(branch)}`", why)
    for original, _ in cfg.uncond_gates:
        why = (
            "the source runs it before its unconditional pass; the package raises instead"
            if isinstance(original, cst.BaseStatement)
            else "the source guides only where it holds; with CFG on, the package raises where it does not"
        )
        context.note("raises", original, f"`{snippet(original)}`", why, "unsafe")


def _note_perturbed_attention(context: Context, perturbed: PerturbedAttention) -> None:
    why = f"perturbed-attention guidance is the guider's ({PERTURBED_ATTENTION_GUIDER}): the package reads it with PAG off"
    for branch in perturbed.branches:
        context.note("rewritten", branch, f"`{snippet(branch)}`", why)
    for statement in perturbed.settings:
        context.note("rewritten", statement, f"`{snippet(statement)}`", "configures the guider")
    what = f"`{snippet(perturbed.layers_statement)}` in `__init__`"
    context.note("rewritten", perturbed.layers_statement, what, f"the guider's default layers: {perturbed.layers}")
    for call in perturbed.batch_ratio_repeats:
        what = f"`{snippet(call)}`"
        context.note("rewritten", call, what, "with PAG off, the repeat to the conditionings' batch is the CFG repeat")


def _feature_gates(
    context: Context, before_loop: Sequence[cst.BaseStatement], cfg: CfgPattern, index: NodeIndex
) -> list[FeatureGate]:
    gates = []
    call_parameters = {p.name for p in context.facts.call_parameters}
    for use in cfg.pairing_helpers:
        call, helper = use.call, use.helper
        holder = index.statement_of(call)
        if not isinstance(holder, cst.If):
            raise context.source.refuse(
                call,
                f"`{helper}` batches its output for CFG inside the helper, and no input guards the call",
                fix="such helpers need pairing inside the helper, which is not converted yet",
            )
        inputs = tuple(n for n in names_read(holder.test) if n in call_parameters)
        gates.append(FeatureGate(holder, helper, inputs, gate_message(inputs, context.facts.name, helper)))
    return gates


def _guard_gates(context: Context, cfg: CfgPattern, index: NodeIndex) -> list[FeatureGate]:
    """A guidance feature gated in the loop (skip-layer guidance) is gated where its input is first tested too
    (`if skip_guidance_layers is not None: original_prompt_embeds = ...`), so its preparation goes as well."""
    gates = []
    call_parameters = {p.name for p in context.facts.call_parameters}
    for guard, message in cfg.feature_guards:
        holders = [branch for branch in index.find(cst.If) if same_expression(branch.test, guard)]
        if holders:
            inputs = tuple(n for n in names_read(guard) if n in call_parameters)
            gates.append(FeatureGate(holders[0], "", inputs, message))
    return gates


def _distilled(cfg: CfgPattern | None, scale: str | None, call_parameters, block_arguments) -> str | None:
    """A `guidance_scale` argument the blocks read that is not the CFG scale: the denoiser embeds it (Flux)."""
    if "guidance_scale" in call_parameters and "guidance_scale" in block_arguments and scale != "guidance_scale":
        return "guidance_scale"
    return None


def _guidance_plan(
    context: Context, cfg: CfgPattern | None, call_parameters, descriptions, perturbed: PerturbedAttention | None
) -> GuidancePlan:
    if perturbed is not None and (cfg is None or cfg.combine is not None or cfg.kind != CfgKind.BATCHED):
        raise context.source.refuse(
            perturbed.flag,
            "perturbed-attention guidance beside CFG that is not batched with diffusers' combine: the guider that "
            "perturbs attention combines as `ClassifierFreeGuidance` does",
        )
    if cfg is None:
        return GuidancePlan(pattern=GuidancePattern.NONE)
    facts = context.facts
    per_call = dict(facts.per_call)
    if cfg.step_scales:  # a scale picked per step: the guider is set to it each step, configured from the first
        scale = cfg.step_scales[0]
    else:
        scale = _call_argument(context, cfg.scale, call_parameters, "guidance scale")
    rescale = _call_argument(context, cfg.rescale, call_parameters, "guidance rescale") if cfg.rescale else None
    condition_expression = _over_call_arguments(context, cfg.condition_expression, call_parameters)
    condition = condition_text(condition_expression, per_call)
    rescale_condition = None
    if cfg.rescale_test is not None:
        marker = {
            part: cst.Name(cfg.condition_name)
            for part in conjuncts(cfg.rescale_test)
            if same_expression(part, cfg.condition)
        }
        rescale_condition = condition_text(replace_nodes(cfg.rescale_test, marker), per_call)
    names = [scale, *([rescale] if rescale else [])]
    for name in names_read(cst.parse_expression(condition)):
        if name in call_parameters and name not in names:
            names.append(name)
    perturbed_plan = None
    if perturbed is not None:
        perturbed_plan = PerturbedAttentionPlan(
            perturbed.scale, perturbed.adaptive_scale, perturbed.layers, perturbed.processors
        )
        names += [n for n in (perturbed.scale, perturbed.adaptive_scale) if n is not None]
    arguments = tuple(_param(n, None, call_parameters, descriptions) for n in names)
    loop_fields = cfg.fields
    return GuidancePlan(
        pattern=GuidancePattern.SEPARATE_PASSES if cfg.kind == CfgKind.SEPARATE else GuidancePattern.BATCHED_CFG,
        kind=cfg.kind,
        guider=_guider_class(context, cfg, perturbed_plan),
        perturbed=perturbed_plan,
        formulation=cfg.formulation,
        combine=cfg.combine,
        denoiser_local=cfg.denoiser_local,
        denoisers=cfg.denoisers,
        step_scale=code(cfg.scale).strip() if cfg.step_scales else None,
        step_scales=cfg.step_scales,
        cache_contexts=cfg.cache_contexts,
        denoiser=cfg.denoiser,
        fields=loop_fields,
        scale=scale,
        rescale=rescale,
        condition=condition,
        condition_name=cfg.condition_name,
        rescale_condition=rescale_condition,
        arguments=arguments,
        model_output=cfg.model_output,
        guided=cfg.guided,
        repeated=cfg.repeated,
        batch_order=cfg.batch_order,
        auxiliaries=cfg.auxiliaries,
        shared_auxiliary=cfg.shared_auxiliary is not None,
    )


def _guider_class(context: Context, cfg: CfgPattern, perturbed: PerturbedAttentionPlan | None) -> str:
    if perturbed is not None:
        return PERTURBED_ATTENTION_GUIDER
    return f"{context.naming.prefix}Guidance" if cfg.combine else "ClassifierFreeGuidance"


def _over_call_arguments(context: Context, expression: cst.BaseExpression, call_parameters) -> cst.BaseExpression:
    """The CFG condition with the locals it reads replaced by what `__call__` assigned them once
    (`true_cfg_scale > 1 and has_neg_prompt` -> `true_cfg_scale > 1 and (negative_prompt is not None or ...)`)."""
    body = call_body(context.facts)
    for _ in range(8):  # locals defined from locals: a few levels at most
        local = [n for n in names_read(expression) if n not in call_parameters and n in flow_of(body).writes]
        if not local:
            return expression
        values = {}
        for name in local:
            assignments = [s for s in body if name in flow_of([s]).writes]
            pattern = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name(name))])])
            if len(assignments) != 1 or not matches(assignments[0], pattern):
                raise context.source.refuse(
                    expression, f"the CFG condition reads `{name}`, which `__call__` does not assign exactly once"
                )
            value = assignments[0].body[0].value
            values[name] = value.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        expression = substitute_names(expression, values)
    raise context.source.refuse(expression, "the CFG condition is defined through too many locals")


def _call_argument(context: Context, expression: cst.BaseExpression, call_parameters, what: str) -> str:
    """The `__call__` argument an expression stands for (`self.guidance_scale` -> `guidance_scale`)."""
    if isinstance(expression, cst.Name) and expression.value in call_parameters:
        return expression.value
    if matches(expression, m.Attribute(value=m.Name("self"))):
        local = context.facts.per_call.get(expression.attr.value)
        if local in call_parameters:
            return local
    raise context.source.refuse(expression, f"the {what} is not a `__call__` argument")


# -- blocks and components ----------------------------------------------------------------------------------------
def _block_plan(
    context: Context,
    key: str,
    segment: Segment,
    rewritten: Rewritten,
    inputs: tuple[Param, ...],
    outputs: tuple[Output, ...],
    unbound: tuple[str, ...],
) -> BlockPlan:
    class_name = context.naming.block_class(key)
    needs = helpers_and_components(context, rewritten.used, class_name)
    first, last = segment.statements[0], segment.statements[-1]
    return BlockPlan(
        key=key,
        class_name=class_name,
        label=segment.label,
        kind=segment.kind,
        lines=(context.source.line_span(first)[0], context.source.line_span(last)[1]),
        body=tuple(rewritten.body),
        inputs=inputs,
        outputs=outputs,
        components=needs.components,
        helpers=needs.helpers,
        configs=needs.configs,
        unbound_outputs=unbound,
        reads_guider=needs.reads_guider,
    )


def _checkable(hint: str | None) -> str | None:
    """The classes of a component's annotation that `isinstance` can check, as `ModularPipeline.update_components`
    does with a spec's type (None when it says nothing of the class): `ControlNetModel | list[ControlNetModel] | MultiControlNetModel` -> `ControlNetModel |
    MultiControlNetModel` (a `list[...]` member makes `isinstance` raise for what the members before it reject; the
    standard `__init__` wraps a list in the multi class, as the generated pipeline's adaptation does)."""
    if hint is None:
        return None
    expression = cst.parse_expression(f"({hint})")
    if "Any" in names_read(expression):
        return None  # `Any | None` says nothing of the class
    members: list[cst.BaseExpression] = []
    pending = [expression]
    while pending:
        node = pending.pop(0)
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.BitOr):
            pending[:0] = [node.left, node.right]
        else:
            members.append(node)
    kept = [member for member in members if not isinstance(member, cst.Subscript)]
    if len(kept) == len(members):
        return hint
    return " | ".join(code(member).strip() for member in kept) or None


def _components(context: Context, blocks: Sequence[BlockPlan | LoopPlan]) -> tuple[Component, ...]:
    used: dict[str, None] = {}
    for block in blocks:
        used.update(dict.fromkeys(block.components))
        if isinstance(block, LoopPlan):
            for step in block.steps:
                used.update(dict.fromkeys(step.components))
    parameters = {p.name: p for p in context.facts.init.parameters}
    result = []
    for name in context.facts.init.components:
        if name in used:
            parameter = parameters.get(name)
            optional = bool(parameter and parameter.default is not None)
            result.append(Component(name, _checkable(parameter.annotation if parameter else None), optional))
    for name in context.facts.init.components:
        if name not in used:
            context.note("dropped", None, f"component `{name}`", "no block uses it", "safe")
    return tuple(result)
