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
rescale move into the guider's configuration.
"""

from __future__ import annotations

import libcst as cst

from ..analysis.guidance.batched import CfgPattern
from ..cst.substitute import Replacement
from ..frontend.parse import code
from ..kinds import CfgKind
from ..planning.plan import GuidanceField


def unbatching_replacements(cfg: CfgPattern) -> dict[cst.CSTNode, Replacement]:
    """Replacements that undo the CFG batching: concatenations, latent expansion, chunk/combine/rescale."""
    replacements: dict[cst.CSTNode, Replacement] = {}
    for site in cfg.cat_sites:
        if isinstance(site.node, cst.IfExp):
            replacements[site.node] = cst.Name(site.cond)
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
    inputs = ", ".join(
        f"{f.name!r}: {f.cond!r}" if f.cond == f.uncond else f"{f.name!r}: ({f.cond!r}, {f.uncond!r})" for f in fields
    )
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
            f"    merge_guider_batches(components.guider, guider_state, {cfg.batch_order!r})\n"
            "    if components.config.batch_guider_calls\n"
            "    else guider_state\n"
            ")\n"
        ),
    ]
    per_batch = [
        cst.parse_statement(f"components.guider.prepare_models(components.{denoiser})\n"),
        *(cst.parse_statement(f"{f.name} = guider_state_batch.{f.name}\n") for f in fields),
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
    tail = [
        cst.parse_statement("split_guider_predictions(guider_state, guider_batches)\n"),
        cst.parse_statement(f"{cfg.guided} = components.guider(guider_state).pred\n"),
    ]
    if cfg.gated:
        # what the source did after combining, still only under CFG (guidance features there raise)
        tail.append(cst.If(test=cfg.condition.deep_clone(), body=cst.IndentedBlock(body=list(cfg.gated))))
    return [*head, loop, *tail]


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
        label = cst.parse_expression(f"{labels}[guider_batch_name(components.guider, guider_state_batch)]")
        item = call.items[0]
        first = item.item.args[0].with_changes(value=label)
        call = call.with_changes(
            items=[item.with_changes(item=item.item.with_changes(args=[first, *item.item.args[1:]]))]
        )
    model = cfg.denoiser_local or f"components.{cfg.denoiser}"
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


def _merged_calls(cfg: CfgPattern, fields: tuple[GuidanceField, ...], model: str) -> list[cst.BaseStatement]:
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
    """
    call = cfg.model_call
    arguments = cst.Call(func=cst.Name("denoiser_call"), args=[cst.Arg(cst.Name("guider_state_batch")), *call.args])
    prepare = [
        *(cst.parse_statement(f"{f.name} = guider_state_batch.{f.name}\n") for f in fields),
        *cfg.batch_statements,
        cst.SimpleStatementLine(
            [cst.Expr(cst.Call(func=cst.parse_expression("denoiser_calls.append"), args=[cst.Arg(arguments)]))]
        ),
    ]
    share = [
        cfg.call_statement.deep_replace(call, cst.Name("denoiser_output")).with_changes(leading_lines=()),
        *cfg.batch_after,
        cst.parse_statement(f"guider_state_batch.noise_pred = {cfg.model_output}\n"),
    ]
    run = cst.parse_expression(
        f"run_denoiser_calls(components.guider, {model}, denoiser_calls, {cfg.batch_order!r}, "
        "merge=components.config.batch_guider_calls)"
    )
    return [
        cst.parse_statement("denoiser_calls = []\n"),
        cst.For(
            target=cst.Name("guider_state_batch"), iter=cst.Name("guider_state"), body=cst.IndentedBlock(body=prepare)
        ),
        cst.For(
            target=cst.parse_expression("guider_state_batch, denoiser_output"),
            iter=run,
            body=cst.IndentedBlock(body=share),
        ),
    ]


GUIDER_ATTRIBUTES_HELPER = '''
@contextmanager
def guider_attributes(guider, **values):
    """Set guider attributes for one denoising step, then put the old values back.

    The standard pipeline picks some guidance values per step (a guidance scale per denoiser, a scale of 0 past a
    truncation point) or combines with values the guider does not have: the guider takes them for the step, and the
    pipeline's configuration is what it was before.
    """
    missing = object()
    saved = {name: getattr(guider, name, missing) for name in values}
    for name, value in values.items():
        setattr(guider, name, value)
    try:
        yield guider
    finally:
        for name, value in saved.items():
            if value is missing:
                delattr(guider, name)
            else:
                setattr(guider, name, value)
'''


GUIDER_BATCH_NAME_HELPER = '''
def guider_batch_name(guider, guider_state_batch):
    """Which prediction a guider batch is for: `pred_cond`, `pred_uncond`, ..."""
    return getattr(guider_state_batch, guider._identifier_key)
'''


# Emitted into `denoise.py` of packages whose source ran all guider batches in one denoiser call: what merging needs.
GUIDER_MERGING_HELPERS = '''
_UNMERGEABLE = object()


def _merge_order(guider, guider_batches, order):
    """The guider batches in `order` (the order the standard pipeline concatenated them in), or None when they
    have to run one by one: a single batch, one the standard pipeline had no place for, or a guider that changes
    the model between batches (it overrides `BaseGuidance.prepare_models` / `cleanup_models`)."""
    hooks_models = any(
        getattr(type(guider), hook) is not getattr(BaseGuidance, hook) for hook in ("prepare_models", "cleanup_models")
    )
    if len(guider_batches) < 2 or hooks_models:
        return None
    identifier = guider._identifier_key
    rank = {name: index for index, name in enumerate(order)}
    if any(getattr(batch, identifier, None) not in rank for batch in guider_batches):
        return None
    return sorted(guider_batches, key=lambda batch: rank[getattr(batch, identifier)])


def _concatenated(values):
    """One value for all batches: tensors of one shape concatenated, lists of one length joined, dicts key by key,
    anything else only when it is the same object everywhere; `_UNMERGEABLE` otherwise."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        if all(isinstance(value, torch.Tensor) and value.shape == first.shape for value in values):
            return torch.cat(values)
        return _UNMERGEABLE
    if isinstance(first, list):
        if all(isinstance(value, list) and len(value) == len(first) for value in values):
            return [item for value in values for item in value]
        return _UNMERGEABLE
    if isinstance(first, dict):
        if not all(isinstance(value, dict) and value.keys() == first.keys() for value in values):
            return _UNMERGEABLE
        merged = {key: _concatenated([value[key] for value in values]) for key in first}
        return _UNMERGEABLE if any(value is _UNMERGEABLE for value in merged.values()) else merged
    if all(value is first for value in values):
        return first
    return _UNMERGEABLE
'''


# With GUIDER_MERGING_HELPERS, for "batched" sources: the guider batches' fields are what the call merges.
GUIDER_BATCHING_HELPERS = '''
def merge_guider_batches(guider, guider_state, order):
    """All guider batches as one batch, when running them in one denoiser call is valid.

    A guider asks for one denoiser call per batch (conditional, unconditional, ...). The standard pipeline made one
    call on the batches concatenated instead: that is what it computed, bit for bit, and it is faster wherever the
    call is launch-bound. Merging is valid when the guider does not change the model between batches and every
    field agrees in type and shape across batches (`_merge_order`, `_concatenated`).

    Returns `[merged]`, or `guider_state` itself when the batches have to run one by one.
    """
    batches = _merge_order(guider, guider_state, order)
    if batches is None:
        return guider_state
    identifier = guider._identifier_key
    fields = {}
    for name, value in batches[0].as_dict().items():
        if name == identifier:
            continue
        merged = _concatenated([value] + [getattr(batch, name, _UNMERGEABLE) for batch in batches[1:]])
        if merged is _UNMERGEABLE:
            return guider_state
        fields[name] = merged
    merged_batch = BlockState(**fields)
    merged_batch.merged_from = batches
    return [merged_batch]


def split_guider_predictions(guider_state, guider_batches):
    """Give each guider batch its share of a merged prediction (nothing to do when batches ran one by one)."""
    if guider_batches is guider_state:
        return
    merged = guider_batches[0]
    for batch, prediction in zip(merged.merged_from, merged.noise_pred.chunk(len(merged.merged_from))):
        batch.noise_pred = prediction
'''


# With GUIDER_MERGING_HELPERS, for "branched" sources: each batch prepares its own call's arguments, which merge.
DENOISER_CALL_HELPERS = '''
def denoiser_call(guider_state_batch, *args, **kwargs):
    """One guider batch's denoiser call, held for `run_denoiser_calls`."""
    return guider_state_batch, args, kwargs


def run_denoiser_calls(guider, model, calls, order, merge=True):
    """Run the denoiser for every guider batch; yield (guider batch, what its call returned).

    A guider asks for one denoiser call per batch (conditional, unconditional, ...). The standard pipeline made one
    call on the batches' arguments concatenated instead: that is what it computed, bit for bit, and it is faster
    wherever the call is launch-bound. With `merge`, when that is valid (`_merge_order`, `_concatenated`) and the
    output splits back into equal shares, so does this; otherwise it calls the model once per batch.
    """
    batches = _merge_order(guider, [batch for batch, _, _ in calls], order) if merge else None
    if batches is not None and len({len(args) for _, args, _ in calls}) == 1:
        position = {id(batch): index for index, batch in enumerate(batches)}
        ordered = sorted(calls, key=lambda call: position[id(call[0])])
        args = [_concatenated(list(values)) for values in zip(*(args for _, args, _ in ordered))]
        kwargs = _concatenated([kwargs for _, _, kwargs in ordered])
        if kwargs is not _UNMERGEABLE and all(value is not _UNMERGEABLE for value in args):
            shares = _shares(model(*args, **kwargs), len(batches))
            if shares is not None:
                yield from zip(batches, shares)
                return
    for batch, args, kwargs in calls:
        guider.prepare_models(model)
        output = model(*args, **kwargs)
        guider.cleanup_models(model)
        yield batch, output


def _shares(output, count):
    """`count` equal shares of a merged call's output along the batch (tuples and model outputs element by element),
    or None."""
    if isinstance(output, torch.Tensor) and output.shape[0] % count == 0:
        return list(output.chunk(count))
    if isinstance(output, list) and len(output) % count == 0:
        size = len(output) // count
        return [output[index * size : (index + 1) * size] for index in range(count)]
    if isinstance(output, tuple):
        parts = [_shares(item, count) for item in output]
        if any(part is None for part in parts):
            return None
        return [tuple(part[index] for part in parts) for index in range(count)]
    if isinstance(output, dict):  # a model output (`Transformer2DModelOutput`, a dict too) field by field
        parts = {key: _shares(value, count) for key, value in output.items()}
        if any(part is None for part in parts.values()):
            return None
        return [type(output)(**{key: part[index] for key, part in parts.items()}) for index in range(count)]
    return None
'''
