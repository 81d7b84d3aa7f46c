"""Running a guider's batches in one denoiser call, as the standard pipeline did.

Why this exists: a guider asks for one denoiser call per batch (conditional, unconditional, ...), where a standard
pipeline made one call on the batches concatenated. One call is what the standard pipeline computed, bit for bit,
and it is faster wherever the call is launch-bound. The generated `denoise.py` of a package whose source batched
CFG carries these functions (copied by name, with a `# Copied from modularize.emit.runtime.guider_calls.<name>`
line): `merge_guider_batches` / `split_guider_predictions` for sources that concatenated the inputs of one call
("batched"), `denoiser_call` / `run_denoiser_calls` for sources that prepared each condition's arguments in a branch
of their own ("branched"). Both fall back to one call per batch whenever merging would not compute the same thing.
"""

import torch
from diffusers.guiders import BaseGuidance
from diffusers.modular_pipelines.modular_pipeline import BlockState

# a value the batches do not agree on: they cannot run in one call
_UNMERGEABLE = object()


def _merge_order(guider, guider_batches, order, prepared=False, hooks=True):
    """The guider batches in `order` (the order the standard pipeline concatenated them in), or None when they
    have to run one by one: a single batch, one the standard pipeline had no place for, or a guider that changes
    the model between batches (it overrides `BaseGuidance.prepare_models` / `cleanup_models`), unless it prepares
    the model for all of them in one call (`prepare_merged_call`, when `prepared`: the caller then runs the merged
    call between the guider's `prepare_models` and `cleanup_models`). Without `hooks` the guider never changes the
    model (an auxiliary model): what it does to the denoiser does not matter."""
    hooks_models = hooks and any(
        getattr(type(guider), hook) is not getattr(BaseGuidance, hook) for hook in ("prepare_models", "cleanup_models")
    )
    if len(guider_batches) < 2 or (hooks_models and not (prepared and hasattr(guider, "prepare_merged_call"))):
        return None
    identifier = guider._identifier_key
    rank = {name: index for index, name in enumerate(order)}
    if any(getattr(batch, identifier, None) not in rank for batch in guider_batches):
        return None
    return sorted(guider_batches, key=lambda batch: rank[getattr(batch, identifier)])


def _concatenated(values, layers=False):
    """One value for all batches: tensors of one shape concatenated, lists of one length joined (with `layers`, a
    list or tuple holds one batched tensor per layer, a ControlNet's residuals: joined item by item), dicts key by
    key, numbers and strings when they are equal, anything else (a 0-d tensor too: the loop's `t`) only when it is
    the same object everywhere; `_UNMERGEABLE` otherwise."""
    first = values[0]
    if isinstance(first, torch.Tensor) and first.dim() > 0:
        if all(isinstance(value, torch.Tensor) and value.shape == first.shape for value in values):
            return torch.cat(values)
        return _UNMERGEABLE
    if layers and isinstance(first, (list, tuple)):
        if not all(isinstance(value, (list, tuple)) and len(value) == len(first) for value in values):
            return _UNMERGEABLE
        merged = [_concatenated(list(items), layers) for items in zip(*values)]
        return _UNMERGEABLE if any(item is _UNMERGEABLE for item in merged) else type(first)(merged)
    if isinstance(first, list):
        if all(isinstance(value, list) and len(value) == len(first) for value in values):
            return [item for value in values for item in value]
        return _UNMERGEABLE
    if isinstance(first, dict):
        if not all(isinstance(value, dict) and value.keys() == first.keys() for value in values):
            return _UNMERGEABLE
        merged = {key: _concatenated([value[key] for value in values], layers) for key in first}
        return _UNMERGEABLE if any(value is _UNMERGEABLE for value in merged.values()) else merged
    if all(value is first for value in values):
        return first
    if isinstance(first, (bool, int, float, str)) and all(type(v) is type(first) and v == first for v in values):
        return first  # a number each batch computed alike (a conditioning scale per step)
    return _UNMERGEABLE


def merge_guider_batches(guider, guider_state, order, layers=()):
    """All guider batches as one batch, when running them in one denoiser call is valid.

    A guider asks for one denoiser call per batch (conditional, unconditional, ...). The standard pipeline made one
    call on the batches concatenated instead: that is what it computed, bit for bit, and it is faster wherever the
    call is launch-bound. Merging is valid when the guider does not change the model between batches and every
    field agrees in type and shape across batches (`_merge_order`, `_concatenated`); a guider that changes the model
    for some batches is told the merged call's order (`prepare_merged_call`). The fields named in `layers`
    hold one batched tensor per layer (a T2I-Adapter's features): they merge layer by layer.

    Returns `[merged]`, or `guider_state` itself when the batches have to run one by one.
    """
    batches = _merge_order(guider, guider_state, order, prepared=True)
    if batches is None:
        return guider_state
    identifier = guider._identifier_key
    fields = {}
    for name, value in batches[0].as_dict().items():
        if name == identifier:
            continue
        merged = _concatenated([value] + [getattr(batch, name, _UNMERGEABLE) for batch in batches[1:]], name in layers)
        if merged is _UNMERGEABLE:
            return guider_state
        fields[name] = merged
    merged_batch = BlockState(**fields)
    merged_batch.merged_from = batches
    if hasattr(guider, "prepare_merged_call"):
        guider.prepare_merged_call([getattr(batch, identifier) for batch in batches])
    return [merged_batch]


def split_guider_predictions(guider_state, guider_batches):
    """Give each guider batch its share of a merged prediction (nothing to do when batches ran one by one)."""
    if guider_batches is guider_state:
        return
    merged = guider_batches[0]
    for batch, prediction in zip(merged.merged_from, merged.noise_pred.chunk(len(merged.merged_from))):
        batch.noise_pred = prediction


def denoiser_call(guider_state_batch, *args, **kwargs):
    """One guider batch's denoiser call, held for `run_denoiser_calls`."""
    return guider_state_batch, args, kwargs


def run_denoiser_calls(guider, model, calls, order, merge=True, layers=False, hooks=True):
    """Run the denoiser for every guider batch; yield (guider batch, what its call returned).

    A guider asks for one denoiser call per batch (conditional, unconditional, ...). The standard pipeline made one
    call on the batches' arguments concatenated instead: that is what it computed, bit for bit, and it is faster
    wherever the call is launch-bound. With `merge`, when that is valid (`_merge_order`, `_concatenated`) and the
    output splits back into equal shares, so does this; otherwise it calls the model once per batch. With
    `layers`, lists and tuples in the arguments and the output hold one batched tensor per layer (a ControlNet's
    residuals), not one sample per item. The batches in `calls` may be some of the guider's (a batch that needs no
    call of this model makes none). A keyword argument every batch holds as one tensor whose batch is not the
    samples' (a SparseCtrl condition of one sample the model broadcasts) is one the standard pipeline passed once
    to its one call: the merged call passes it once too. Without `hooks` (an auxiliary model, which the source
    never perturbed) the guider does not prepare the model for its batches: a guider that perturbs the denoiser's
    attention leaves a ControlNet's alone, and counts only the denoiser's batches.
    """
    # a guider that changes the model between batches but can prepare it for one merged call (perturbed-attention
    # guidance, `prepare_merged_call`) gets the call prepared as the source's one call ran
    prepared = hooks and hasattr(guider, "prepare_merged_call")
    batches = _merge_order(guider, [batch for batch, _, _ in calls], order, prepared, hooks) if merge else None
    if batches is not None and len({len(args) for _, args, _ in calls}) == 1:
        position = {id(batch): index for index, batch in enumerate(batches)}
        ordered = sorted(calls, key=lambda call: position[id(call[0])])
        args = [_concatenated(list(values), layers) for values in zip(*(args for _, args, _ in ordered))]
        once = _broadcast_once(ordered)
        kwargs = _concatenated([{k: v for k, v in kw.items() if k not in once} for _, _, kw in ordered], layers)
        if kwargs is not _UNMERGEABLE:
            kwargs.update(once)
        if kwargs is not _UNMERGEABLE and all(value is not _UNMERGEABLE for value in args):
            if prepared:
                guider.prepare_merged_call([getattr(batch, guider._identifier_key) for batch in batches])
                guider.prepare_models(model)
            output = model(*args, **kwargs)
            if prepared:
                guider.cleanup_models(model)
            shares = _shares(output, len(batches), layers)
            if shares is not None:
                yield from zip(batches, shares)
                return
            if prepared:
                guider.prepare_merged_call(None)
    for batch, args, kwargs in calls:
        if hooks:
            guider.prepare_models(model)
        output = model(*args, **kwargs)
        if hooks:
            guider.cleanup_models(model)
        yield batch, output


def _broadcast_once(calls):
    """{keyword: value} of the keyword arguments every call holds as the same tensor with a batch other than the
    samples' (the first positional tensor's), or the same tuple or list of such tensors (rotary embeddings' cos and
    sin): what the standard pipeline passed once and the model broadcast."""
    samples = {
        args[0].shape[0] for _, args, _ in calls if args and isinstance(args[0], torch.Tensor) and args[0].dim()
    }
    if len(samples) != 1:
        return {}
    (batch,) = samples
    first = calls[0][2]

    def unbatched(value):
        return isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] != batch

    return {
        name: value
        for name, value in first.items()
        if (unbatched(value) or (isinstance(value, (tuple, list)) and value and all(map(unbatched, value))))
        and all(kwargs.get(name) is value for _, _, kwargs in calls)
    }


def _shares(output, count, layers=False):
    """`count` equal shares of a merged call's output along the batch (tuples and model outputs element by element,
    with `layers` lists too), or None."""
    if isinstance(output, torch.Tensor) and output.shape[0] % count == 0:
        return list(output.chunk(count))
    if isinstance(output, list) and not layers and len(output) % count == 0:
        size = len(output) // count
        return [output[index * size : (index + 1) * size] for index in range(count)]
    if isinstance(output, (tuple, list)):
        parts = [_shares(item, count, layers) for item in output]
        if any(part is None for part in parts):
            return None
        return [type(output)(part[index] for part in parts) for index in range(count)]
    if isinstance(output, dict):  # a model output (`Transformer2DModelOutput`, a dict too) field by field
        parts = {key: _shares(value, count, layers) for key, value in output.items()}
        if any(part is None for part in parts.values()):
            return None
        return [type(output)(**{key: part[index] for key, part in parts.items()}) for index in range(count)]
    return None


def batch_output(outputs, guider_state_batch):
    """A guider batch's output of an auxiliary model (`outputs`: {id(batch): output}). A batch that made no call
    replaces every output by a fill of its shape (a ControlNet's zeros for the unconditional half in guess mode):
    any other batch's output has that shape."""
    found = outputs.get(id(guider_state_batch))
    return found if found is not None else next(iter(outputs.values()))


def fresh_layers(value):
    """A new list of the same per-layer tensors for each guider batch: a model may consume the list it is given
    (`UNet2DConditionModel` pops the T2I-Adapter residuals), and every batch needs all of them. Anything else is
    returned as it is."""
    return list(value) if isinstance(value, (list, tuple)) else value
