"""Rewrite batched classifier-free guidance into guider hooks.

Before (standard `__call__`, pieces found by `modularize.guidance.find_batched_cfg`):

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

from ..guidance import CfgPattern
from ..plan import GuidanceField
from ..source import code
from ._nodes import Replacement


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
    if cfg.kind in ("separate", "branched"):
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
    """One denoiser call per guider batch, never merged: "separate" sources called the denoiser once per condition
    already; "branched" ones wrote the per-condition inputs out in their `else` branch, which each batch runs.

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
    if not attributes:
        return body
    # what the standard pipeline picks per step is the guider's for this step only
    context = cst.parse_expression(f"guider_attributes(components.guider, {', '.join(attributes)})")
    return [cst.With(items=[cst.WithItem(context)], body=cst.IndentedBlock(body=body))]


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


# Emitted once into `denoise.py` of packages whose denoiser runs guider batches.
GUIDER_BATCHING_HELPERS = '''
_UNMERGEABLE = object()


def merge_guider_batches(guider, guider_state, order):
    """All guider batches as one batch, when running them in one denoiser call is valid.

    A guider asks for one denoiser call per batch (conditional, unconditional, ...). The standard pipeline made one
    call on the batches concatenated instead: that is what it computed, bit for bit, and it is faster wherever the
    call is launch-bound. Merging is valid when the guider does not change the model between batches (it keeps
    `BaseGuidance.prepare_models` / `cleanup_models`) and every field agrees in type and shape across batches;
    fields are concatenated in `order`, the order the standard pipeline concatenated them in.

    Returns `[merged]`, or `guider_state` itself when the batches have to run one by one.
    """
    hooks_models = any(
        getattr(type(guider), hook) is not getattr(BaseGuidance, hook) for hook in ("prepare_models", "cleanup_models")
    )
    if len(guider_state) < 2 or hooks_models:
        return guider_state
    identifier = guider._identifier_key
    rank = {name: index for index, name in enumerate(order)}
    if any(getattr(batch, identifier, None) not in rank for batch in guider_state):
        return guider_state
    batches = sorted(guider_state, key=lambda batch: rank[getattr(batch, identifier)])
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


def _concatenated(values):
    first = values[0]
    if isinstance(first, torch.Tensor):
        if all(isinstance(value, torch.Tensor) and value.shape == first.shape for value in values):
            return torch.cat(values)
        return _UNMERGEABLE
    if isinstance(first, dict):
        if not all(isinstance(value, dict) and value.keys() == first.keys() for value in values):
            return _UNMERGEABLE
        merged = {key: _concatenated([value[key] for value in values]) for key in first}
        return _UNMERGEABLE if any(value is _UNMERGEABLE for value in merged.values()) else merged
    if all(value is first for value in values):
        return first
    return _UNMERGEABLE


def split_guider_predictions(guider_state, guider_batches):
    """Give each guider batch its share of a merged prediction (nothing to do when batches ran one by one)."""
    if guider_batches is guider_state:
        return
    merged = guider_batches[0]
    for batch, prediction in zip(merged.merged_from, merged.noise_pred.chunk(len(merged.merged_from))):
        batch.noise_pred = prediction
'''
