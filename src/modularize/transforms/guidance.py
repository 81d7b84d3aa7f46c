"""Rewrite batched classifier-free guidance into guider hooks.

Before (standard `__call__`, pieces found by `modularize.analysis.guidance.batched.find_batched_cfg`):

    if self.do_classifier_free_guidance:
        prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
    ...
    latent_model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
    noise_pred = self.unet(latent_model_input, t, encoder_hidden_states=prompt_embeds)[0]
    if self.do_classifier_free_guidance:
        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
        noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)

After (the concatenation is undone; the denoiser runs once per guider batch, the guider combines):

    latent_model_input = latents
    components.guider.set_state(step=i, num_inference_steps=num_inference_steps, timestep=t)
    guider_state = components.guider.prepare_inputs_from_block_state(
        block_state, {"prompt_embeds": ("prompt_embeds", "negative_prompt_embeds")}
    )
    for guider_state_batch in guider_state:
        components.guider.prepare_models(components.unet)
        prompt_embeds = guider_state_batch.prompt_embeds
        noise_pred = self.unet(latent_model_input, t, encoder_hidden_states=prompt_embeds)[0]
        guider_state_batch.noise_pred = noise_pred
        components.guider.cleanup_models(components.unet)
    noise_pred = components.guider(guider_state).pred

The model call keeps its text (its `self.` is rewritten later like every other statement); the guidance scale and
rescale move into the guider's configuration. The helpers the rewritten code calls (`merge_guider_batches`,
`run_denoiser_calls`, `guider_attributes`, `guider_batch_name`) are real Python in `modularize.emit.runtime`,
which emit copies by name into the files that call them.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from ..analysis.guidance.batched import CfgPattern
from ..cst.substitute import Replacement
from ..frontend.parse import code
from ..kinds import CfgKind
from ..planning.plan import GuidanceField


def _moved_again(name: str, applied: Sequence[cst.Call]) -> cst.BaseExpression:
    """`.to` calls the source applied to a concatenation, applied to one half instead:

    x = torch.cat([negative, x]).to(dtype=d)    ->    x = x.to(dtype=d); negative = negative.to(dtype=d)
    """
    expression: cst.BaseExpression = cst.Name(name)
    for call in applied:
        expression = call.with_changes(func=call.func.with_changes(value=expression))
    return expression


def unbatching_replacements(cfg: CfgPattern) -> dict[cst.CSTNode, Replacement]:
    """Replacements that undo the CFG batching: concatenations, latent expansion, chunk/combine/rescale."""
    replacements: dict[cst.CSTNode, Replacement] = {}
    for site in cfg.cat_sites:
        if site.single is not None:
            replacements[site.node] = site.single
        elif isinstance(site.node, cst.IfExp):
            replacements[site.node] = cst.Name(site.cond)
        elif site.applied:
            # `x = torch.cat([u, c]).to(d)`: each half moved as the concatenation was
            halves = dict.fromkeys([(site.target, site.cond), *((part, part) for part in (site.uncond, *site.others))])
            replacements[site.node] = cst.FlattenSentinel(
                [
                    cst.SimpleStatementLine(
                        [cst.Assign([cst.AssignTarget(cst.Name(name))], _moved_again(half, site.applied))]
                    )
                    for name, half in halves
                ]
            )
        elif site.target == site.cond:
            replacements[site.node] = cst.RemoveFromParent()
        else:
            replacements[site.node] = cst.parse_statement(f"{site.target} = {site.cond}\n")
    for expansion in cfg.expansions:
        replacements[expansion] = expansion.orelse.with_changes(lpar=[], rpar=[])
    for statement in cfg.guidance_statements:
        replacements[statement] = cst.RemoveFromParent()
    for statement, mirrored in cfg.mirrored:
        replacements[statement] = mirrored
    if cfg.condition_statement is not None:
        # the local CFG flag now reads the guider's decision (a property of the generated pipeline)
        replacements[cfg.condition_statement] = cst.parse_statement(
            f"{cfg.condition_name} = self.{cfg.condition_name}\n"
        )
    return replacements


def _input_field(field: GuidanceField) -> str:
    """`'prompt_embeds': ('prompt_embeds', 'negative_prompt_embeds')`; a value every batch shares by its name alone."""
    sources = (field.cond, field.uncond, *field.others)
    if len(set(sources)) == 1:
        return f"{field.name!r}: {field.cond!r}"
    return f"{field.name!r}: ({', '.join(map(repr, sources))})"


def guider_denoise(
    cfg: CfgPattern,
    fields: tuple[GuidanceField, ...],
    step: str,
    timestep: str,
    num_inference_steps: str,
) -> list[cst.BaseStatement]:
    """The denoiser step's statements: the original model call (and what follows it per batch) in a guider loop.

    A field whose conditional and unconditional names are the same (`latent_model_input`) is one the source
    repeated for each batch; the guider hands the same value to every batch.
    """
    denoiser = cfg.denoiser
    inputs = ", ".join(_input_field(field) for field in fields)
    if cfg.kind in (CfgKind.SEPARATE, CfgKind.BRANCHED):
        return _per_batch(cfg, fields, inputs, step, timestep, num_inference_steps)
    head = [
        cst.parse_statement(
            f"components.guider.set_state(step={step}, num_inference_steps={num_inference_steps}, timestep={timestep})\n"
        ),
        cst.parse_statement(
            f"guider_state = components.guider.prepare_inputs_from_block_state(block_state, {{{inputs}}})\n"
        ),
        cst.parse_statement(
            "guider_batches = (\n"
            f"    merge_guider_batches(components.guider, guider_state, {cfg.batch_order!r}{_layers(fields)})\n"
            "    if components.config.batch_guider_calls\n"
            "    else guider_state\n"
            ")\n"
        ),
    ]
    if cfg.model_call is not None:
        # auxiliary models run in each batch before its denoiser call, the denoiser calls merge when they can (the
        # model as `self.<denoiser>`, rewritten like the source's own reads, so the block declares it)
        # (merged only when the batches share the auxiliary call too: made one by one, its outputs differ from the
        # source's batched call in the last bits anyway)
        merge = "components.config.batch_guider_calls" if cfg.shared_auxiliary else "False"
        loop = _merged_calls(cfg, fields, f"self.{denoiser}", merge=merge)
        return _with_attributes([*head[:2], *loop, *_combined(cfg)], _combine_attributes(cfg))
    per_batch = [
        cst.parse_statement(f"components.guider.prepare_models(components.{denoiser})\n"),
        *(_binding(f) for f in fields),
        cfg.call_statement,
        *cfg.between,
        cst.parse_statement(f"guider_state_batch.noise_pred = {cfg.model_output}\n"),
        cst.parse_statement(f"components.guider.cleanup_models(components.{denoiser})\n"),
    ]
    loop = cst.For(
        target=cst.Name("guider_state_batch"),
        iter=cst.Name("guider_batches"),
        body=cst.IndentedBlock(body=per_batch),
    )
    tail = [cst.parse_statement("split_guider_predictions(guider_state, guider_batches)\n"), *_combined(cfg)]
    return _with_attributes([*head, loop, *tail], _combine_attributes(cfg))


def _binding(field: GuidanceField) -> cst.BaseStatement:
    """`name = guider_state_batch.name`; a list of per-layer tensors is copied for each batch (`fresh_layers`)."""
    value = f"guider_state_batch.{field.name}"
    return cst.parse_statement(f"{field.name} = {f'fresh_layers({value})' if field.layers else value}\n")


def _layers(fields: tuple[GuidanceField, ...]) -> str:
    """`, layers=(...)`: the fields holding one batched tensor per layer, which merge layer by layer."""
    layered = tuple(f.name for f in fields if f.layers)
    return f", layers={layered!r}" if layered else ""


def _combined(cfg: CfgPattern) -> list[cst.BaseStatement]:
    """The guider's combine, and what the source did after combining, still only under CFG (guidance features
    there raise)."""
    tail: list[cst.BaseStatement] = [cst.parse_statement(f"{cfg.guided} = components.guider(guider_state).pred\n")]
    if cfg.gated:
        tail.append(cst.If(test=cfg.condition.deep_clone(), body=cst.IndentedBlock(body=list(cfg.gated))))
    return tail


def _combine_attributes(cfg: CfgPattern) -> list[str]:
    """What a custom combine reads besides the predictions, set on the guider for the step."""
    return [f"{name}={local}" for name, local in cfg.combine.inputs] if cfg.combine is not None else []


def _per_batch(
    cfg: CfgPattern, fields: tuple[GuidanceField, ...], inputs: str, step: str, timestep: str, num_steps: str
) -> list[cst.BaseStatement]:
    """Guider batches that prepare their own inputs: "separate" sources called the denoiser once per condition
    (one call per batch, never merged); "branched" ones wrote the per-condition inputs out in their `else` branch,
    which each batch runs before its arguments join the source's one call (`_merged_calls`).

    `cache_context("cond")` becomes the batch's own label. A scale the source picks per step, and what a custom
    combine reads besides the predictions, are set on the guider for the step (`guider_attributes`).
    """
    attributes = []
    if cfg.step_scales:
        attributes.append(f"guidance_scale={code(cfg.scale).strip()}")
    if cfg.combine is not None:
        attributes += [f"{name}={local}" for name, local in cfg.combine.inputs]
    body = [
        cst.parse_statement(
            f"components.guider.set_state(step={step}, num_inference_steps={num_steps}, timestep={timestep})\n"
        ),
        cst.parse_statement(
            f"guider_state = components.guider.prepare_inputs_from_block_state(block_state, {{{inputs}}})\n"
        ),
    ]
    if cfg.uncond_gates:
        gates = [gate for _, gate in cfg.uncond_gates]
        body.append(cst.If(test=cfg.condition.deep_clone(), body=cst.IndentedBlock(body=gates)))
    call = cfg.call_statement
    if cfg.cache_contexts:
        labels = "{" + ", ".join(f"{batch!r}: {label!r}" for batch, label in cfg.cache_contexts) + "}"
        label = cst.parse_expression(f"guider_batch_label(components.guider, guider_state_batch, {labels})")
        item = call.items[0]
        first = item.item.args[0].with_changes(value=label)
        call = call.with_changes(
            items=[item.with_changes(item=item.item.with_changes(args=[first, *item.item.args[1:]]))]
        )
    if cfg.uncond_call_statement is not None:
        # the passes give other keywords: the unconditional batch makes the source's unconditional call
        test = cst.parse_expression('guider_batch_name(components.guider, guider_state_batch) == "pred_uncond"')
        uncond = cfg.uncond_call_statement.with_changes(leading_lines=())
        call = cst.If(
            test=test, body=cst.IndentedBlock(body=[uncond]), orelse=cst.Else(body=cst.IndentedBlock(body=[call]))
        )
    model = cfg.denoiser_local or f"self.{cfg.denoiser}"
    if cfg.kind == CfgKind.BRANCHED:
        body += _merged_calls(cfg, fields, model)
        body.append(cst.parse_statement(f"{cfg.guided} = components.guider(guider_state).pred\n"))
        return _with_attributes(body, attributes)
    per_batch = [
        cst.parse_statement(f"components.guider.prepare_models({model})\n"),
        *(cst.parse_statement(f"{f.name} = guider_state_batch.{f.name}\n") for f in fields),
        *cfg.batch_statements,
        call,
        *cfg.batch_after,
        cst.parse_statement(f"guider_state_batch.noise_pred = {cfg.model_output}\n"),
        cst.parse_statement(f"components.guider.cleanup_models({model})\n"),
    ]
    body.append(
        cst.For(
            target=cst.Name("guider_state_batch"),
            iter=cst.Name("guider_state"),
            body=cst.IndentedBlock(body=per_batch),
        )
    )
    body.append(cst.parse_statement(f"{cfg.guided} = components.guider(guider_state).pred\n"))
    return _with_attributes(body, attributes)


def _with_attributes(body: list[cst.BaseStatement], attributes: list[str]) -> list[cst.BaseStatement]:
    if not attributes:
        return body
    # what the standard pipeline picks per step is the guider's for this step only
    context = cst.parse_expression(f"guider_attributes(components.guider, {', '.join(attributes)})")
    return [cst.With(items=[cst.WithItem(context)], body=cst.IndentedBlock(body=body))]


def _merged_calls(
    cfg: CfgPattern, fields: tuple[GuidanceField, ...], model: str, merge: str = "components.config.batch_guider_calls"
) -> list[cst.BaseStatement]:
    """A "branched" source made one call on both batches' inputs: each guider batch prepares its inputs (the
    source's CFG-off branch), `run_denoiser_calls` makes that one call when it can, and each batch takes its share.

        denoiser_calls = []
        for guider_state_batch in guider_state:
            prompt_embeds = guider_state_batch.prompt_embeds
            model_input = latents.to(components.transformer.dtype)
            denoiser_calls.append(denoiser_call(guider_state_batch, model_input, prompt_embeds, return_dict=False))
        for guider_state_batch, denoiser_output in run_denoiser_calls(
            components.guider, components.transformer, denoiser_calls, ("pred_cond", "pred_uncond"), merge=...
        ):
            model_out = denoiser_output[0]
            guider_state_batch.noise_pred = model_out

    With an auxiliary model the batches share one call of (a ControlNet, `cfg.shared_auxiliary`), its calls are
    held and run the same way first, each batch taking its share of the outputs before its denoiser call:

        auxiliary_calls = []
        for guider_state_batch in guider_state:
            ...  # what the batch computes before the auxiliary call
            if not (guess_mode and guider_batch_name(components.guider, guider_state_batch) == "pred_uncond"):
                auxiliary_calls.append(denoiser_call(guider_state_batch, control_model_input, t, ...))
        auxiliary_outputs = {
            id(batch): output
            for batch, output in run_denoiser_calls(components.guider, self.controlnet, auxiliary_calls, ...)
        }
        denoiser_calls = []
        for guider_state_batch in guider_state:
            down, mid = batch_output(auxiliary_outputs, guider_state_batch)
            ...  # what the batch computes after it, then its denoiser call is held
    """
    bindings = [cst.parse_statement(f"{f.name} = guider_state_batch.{f.name}\n") for f in fields]
    shared = cfg.shared_auxiliary
    layers = ", layers=True" if cfg.auxiliaries else ""
    head: list[cst.BaseStatement] = []
    prepare = [*bindings, *cfg.batch_statements]
    if shared is not None:
        auxiliary_call = shared.call
        hold = _held("auxiliary_calls", auxiliary_call)
        if shared.skip is not None:
            # a batch that replaces every output by a fill of its shape needs no call
            test = cst.UnaryOperation(
                cst.Not(), shared.skip.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
            )
            hold = cst.If(test=test, body=cst.IndentedBlock(body=[hold]))
        run = (
            f"run_denoiser_calls(components.guider, self.{shared.model}, auxiliary_calls, {cfg.batch_order!r}, "
            f"merge={merge}{layers}, hooks=False)"
        )
        head = [
            cst.parse_statement("auxiliary_calls = []\n"),
            _for_batches([*bindings, *shared.before, hold]),
            cst.parse_statement(f"auxiliary_outputs = {{id(batch): output for batch, output in {run}}}\n"),
        ]
        taken = shared.statement.deep_replace(
            auxiliary_call, cst.parse_expression("batch_output(auxiliary_outputs, guider_state_batch)")
        )
        prepare = [*bindings, taken.with_changes(leading_lines=()), *shared.after]
    call = cfg.model_call
    share = [
        cfg.call_statement.deep_replace(call, cst.Name("denoiser_output")).with_changes(leading_lines=()),
        *cfg.between,
        *cfg.batch_after,
        cst.parse_statement(f"guider_state_batch.noise_pred = {cfg.model_output}\n"),
    ]
    run = cst.parse_expression(
        f"run_denoiser_calls(components.guider, {model}, denoiser_calls, {cfg.batch_order!r}, merge={merge}{layers})"
    )
    return [
        *head,
        cst.parse_statement("denoiser_calls = []\n"),
        _for_batches([*prepare, _held("denoiser_calls", call)]),
        cst.For(
            target=cst.parse_expression("guider_state_batch, denoiser_output"),
            iter=run,
            body=cst.IndentedBlock(body=share),
        ),
    ]


def _held(calls: str, call: cst.Call) -> cst.SimpleStatementLine:
    """`<calls>.append(denoiser_call(guider_state_batch, <the call's arguments>))`."""
    arguments = cst.Call(func=cst.Name("denoiser_call"), args=[cst.Arg(cst.Name("guider_state_batch")), *call.args])
    append = cst.Call(func=cst.parse_expression(f"{calls}.append"), args=[cst.Arg(arguments)])
    return cst.SimpleStatementLine([cst.Expr(append)])


def _for_batches(body: list[cst.BaseStatement]) -> cst.For:
    return cst.For(target=cst.Name("guider_state_batch"), iter=cst.Name("guider_state"), body=cst.IndentedBlock(body))
