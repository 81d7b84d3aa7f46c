"""The runtime code generated packages carry (`modularize.emit.runtime`), called directly, and how emit copies it.

The helpers run on small tensors with diffusers' own `ClassifierFreeGuidance` (its real batch bookkeeping) and fake
denoisers that record their calls: no model runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import libcst as cst
import pytest
import torch
from diffusers.guiders import ClassifierFreeGuidance
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.modular_pipelines.modular_pipeline import (
    BlockState,
    ModularPipeline,
    ModularPipelineBlocks,
    PipelineState,
)
from diffusers.modular_pipelines.modular_pipeline_utils import InputParam

from modularize.emit import runtime
from modularize.emit.package import FRAMEWORK, UNLESS_DEFINED
from modularize.emit.runtime import copied_definition, entry_points, runtime_definitions
from modularize.emit.runtime.explicit_none import ExplicitNoneInputs
from modularize.emit.runtime.family import FamilyPipeline
from modularize.emit.runtime.guider_calls import (
    _UNMERGEABLE,
    _concatenated,
    _merge_order,
    _shares,
    batch_output,
    denoiser_call,
    merge_guider_batches,
    run_denoiser_calls,
    split_guider_predictions,
)
from modularize.emit.runtime.guider_state import guider_attributes, guider_batch_name

RUNTIME = Path(runtime.__file__).parent
SOURCE_ORDER = ("pred_uncond", "pred_cond")  # `torch.cat([negative_prompt_embeds, prompt_embeds])`


def cfg_guider(scale: float = 5.0, enabled: bool = True, cls=ClassifierFreeGuidance):
    guider = cls(guidance_scale=scale, enabled=enabled)
    guider.set_state(step=1, num_inference_steps=2, timestep=torch.tensor(500))  # inside its start..stop window
    return guider


def guider_batches(guider, **fields):
    """`prepare_inputs_from_block_state` on fields given as name=(cond, uncond) or name=shared."""
    values, spec = {}, {}
    for name, value in fields.items():
        if isinstance(value, tuple):
            values[name], values[f"negative_{name}"] = value
            spec[name] = (name, f"negative_{name}")
        else:
            values[name] = value
            spec[name] = name
    return guider.prepare_inputs_from_block_state(BlockState(**values), spec)


def by_name(guider, batches):
    return {guider_batch_name(guider, batch): batch for batch in batches}


class ModelHookingGuider(ClassifierFreeGuidance):
    """A guider that changes the model between batches: its batches must never share a call."""

    def prepare_models(self, denoiser):
        self.prepared = getattr(self, "prepared", 0) + 1

    def cleanup_models(self, denoiser):
        self.cleaned = getattr(self, "cleaned", 0) + 1


class RecordingDenoiser:
    """Returns `scale * sample` in the shape `wrap` asks for, and records the batch size of every call."""

    def __init__(self, wrap=lambda prediction: prediction):
        self.batches: list[int] = []
        self.wrap = wrap

    def __call__(self, sample, timestep, encoder_hidden_states=None, scale=1.0):
        self.batches.append(sample.shape[0])
        return self.wrap(sample * scale + encoder_hidden_states.sum(-1, keepdim=True))


# -- merge_guider_batches / split_guider_predictions ("batched" sources) -------------------------------------------
def test_merging_concatenates_every_field_in_the_order_the_source_concatenated_them():
    guider = cfg_guider()
    cond, uncond, latents = torch.ones(2, 3), torch.zeros(2, 3), torch.randn(2, 4)
    state = guider_batches(guider, prompt_embeds=(cond, uncond), latents=latents)
    assert [guider_batch_name(guider, b) for b in state] == ["pred_cond", "pred_uncond"]  # the guider's order

    (merged,) = merge_guider_batches(guider, state, SOURCE_ORDER)

    assert torch.equal(merged.prompt_embeds, torch.cat([uncond, cond]))  # the source's `[negative, positive]`
    assert torch.equal(merged.latents, torch.cat([latents, latents]))  # `torch.cat([latents] * 2)`
    assert [guider_batch_name(guider, b) for b in merged.merged_from] == list(SOURCE_ORDER)
    assert guider._identifier_key not in merged.as_dict()


def test_a_merged_prediction_is_split_back_and_combined_as_the_source_combined_it():
    guider = cfg_guider(scale=5.0)
    state = guider_batches(guider, prompt_embeds=(torch.ones(1, 3), torch.zeros(1, 3)))
    batches = merge_guider_batches(guider, state, SOURCE_ORDER)
    noise_uncond, noise_text = torch.randn(1, 4), torch.randn(1, 4)
    batches[0].noise_pred = torch.cat([noise_uncond, noise_text])

    split_guider_predictions(state, batches)

    named = by_name(guider, state)
    assert torch.equal(named["pred_uncond"].noise_pred, noise_uncond)
    assert torch.equal(named["pred_cond"].noise_pred, noise_text)
    expected = noise_uncond + 5.0 * (noise_text - noise_uncond)
    assert torch.equal(guider(state).pred, expected)


def test_batches_that_ran_one_by_one_keep_their_own_predictions():
    guider = cfg_guider()
    state = guider_batches(guider, prompt_embeds=(torch.ones(1, 3), torch.zeros(1, 3)))
    for batch in state:
        batch.noise_pred = torch.full((1, 4), float(len(guider_batch_name(guider, batch))))
    split_guider_predictions(state, state)
    assert [b.noise_pred[0, 0].item() for b in state] == [9.0, 11.0]


@pytest.mark.parametrize(
    ("guider", "fields", "order"),
    [
        # CFG off: a single batch, nothing to merge
        (cfg_guider(scale=1.0, enabled=False), {"prompt_embeds": (torch.ones(1, 3), torch.zeros(1, 3))}, SOURCE_ORDER),
        # a guider hooking the model per batch
        (
            cfg_guider(cls=ModelHookingGuider),
            {"prompt_embeds": (torch.ones(1, 3), torch.zeros(1, 3))},
            SOURCE_ORDER,
        ),
        # a batch the source had no place for
        (cfg_guider(), {"prompt_embeds": (torch.ones(1, 3), torch.zeros(1, 3))}, ("pred_cond",)),
        # embeddings of different lengths (a negative prompt tokenized shorter)
        (cfg_guider(), {"prompt_embeds": (torch.ones(1, 3), torch.zeros(1, 5))}, SOURCE_ORDER),
        # a field that is a different object per batch and not a tensor, list or dict
        (cfg_guider(), {"scale": (1.0, 2.0)}, SOURCE_ORDER),
    ],
    ids=["single-batch", "model-hooks", "unknown-batch", "shapes-differ", "unmergeable-field"],
)
def test_batches_run_one_by_one_when_one_call_would_not_compute_the_same(guider, fields, order):
    state = guider_batches(guider, **fields)
    assert merge_guider_batches(guider, state, order) is state


def test_merge_order_is_the_sources_order_or_none():
    guider = cfg_guider()
    state = guider_batches(guider, prompt_embeds=(torch.ones(1, 3), torch.zeros(1, 3)))
    ordered = _merge_order(guider, state, ("pred_uncond", "pred_cond"))
    assert [guider_batch_name(guider, b) for b in ordered] == ["pred_uncond", "pred_cond"]
    ordered = _merge_order(guider, state, ("pred_cond", "pred_uncond"))
    assert [guider_batch_name(guider, b) for b in ordered] == ["pred_cond", "pred_uncond"]
    assert _merge_order(guider, state[:1], SOURCE_ORDER) is None


# -- _concatenated ---------------------------------------------------------------------------------------------------
def test_tensors_of_one_shape_are_concatenated_along_the_batch():
    a, b = torch.ones(1, 2), torch.zeros(1, 2)
    assert torch.equal(_concatenated([a, b]), torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    assert _concatenated([a, torch.zeros(2, 2)]) is _UNMERGEABLE
    assert _concatenated([a, [1.0]]) is _UNMERGEABLE


def test_lists_of_one_length_are_joined_in_order():
    assert _concatenated([[1, 2], [3, 4]]) == [1, 2, 3, 4]
    assert _concatenated([[1, 2], [3]]) is _UNMERGEABLE
    assert _concatenated([[1], (3,)]) is _UNMERGEABLE


def test_dicts_merge_key_by_key_and_only_when_every_key_merges():
    a = {"text_embeds": torch.ones(1, 2), "time_ids": torch.ones(1, 6)}
    b = {"text_embeds": torch.zeros(1, 2), "time_ids": torch.zeros(1, 6)}
    merged = _concatenated([a, b])
    assert list(merged) == ["text_embeds", "time_ids"]
    assert merged["time_ids"].shape == (2, 6) and merged["time_ids"][1].sum() == 0
    assert _concatenated([a, {"text_embeds": torch.zeros(1, 2)}]) is _UNMERGEABLE
    assert _concatenated([a, {**b, "time_ids": torch.zeros(1, 5)}]) is _UNMERGEABLE


def test_anything_else_merges_only_when_it_is_the_same_object():
    t = torch.tensor(999)  # the loop's timestep, 0-d: it cannot be concatenated, it can be shared
    assert _concatenated([t, t]) is t
    assert _concatenated([t, torch.tensor(999)]) is _UNMERGEABLE
    marker = object()
    assert _concatenated([marker, marker]) is marker
    assert _concatenated([None, None]) is None
    assert _concatenated([1.0, 2.0]) is _UNMERGEABLE
    assert _concatenated(["a", "b"]) is _UNMERGEABLE


def test_equal_numbers_merge_as_one_value():
    """A conditioning scale each batch computed alike (`scale * keep[i]`): equal, not the same object."""
    assert _concatenated([0.5 * 3, 1.5]) == 1.5
    assert _concatenated([1, 1.0]) is _UNMERGEABLE  # (another type: not what one call on both would have got)


def test_with_layers_lists_and_tuples_join_layer_by_layer():
    """A ControlNet's residuals: one batched tensor per layer, however many layers (two here, as many as batches)."""
    uncond = [torch.zeros(1, 2), torch.zeros(1, 3)]
    cond = (torch.ones(1, 2), torch.ones(1, 3))
    merged = _concatenated([uncond, list(cond)], layers=True)
    assert [tuple(t.shape) for t in merged] == [(2, 2), (2, 3)] and merged[0][1].sum() == 2
    assert _concatenated([uncond, [torch.zeros(1, 2)]], layers=True) is _UNMERGEABLE
    assert _concatenated([uncond, list(cond)]) == [*uncond, *cond]  # (without: samples, joined)
    down, mid = _shares(([torch.arange(4), torch.arange(4, 8)], torch.arange(8, 12)), 2, layers=True)[1]
    assert [t.tolist() for t in down] == [[2, 3], [6, 7]] and mid.tolist() == [10, 11]


def test_a_batch_that_made_no_auxiliary_call_takes_another_batchs_output_for_its_fills():
    cond, uncond = BlockState(), BlockState()
    outputs = {id(cond): "cond output"}
    assert batch_output(outputs, cond) == batch_output(outputs, uncond) == "cond output"


# -- denoiser_call / run_denoiser_calls ("branched" sources) ------------------------------------------------------
def branched_calls(guider, wrap=lambda p: p, cond=None, uncond=None):
    cond = torch.ones(1, 3) if cond is None else cond
    uncond = torch.zeros(1, 3) if uncond is None else uncond
    state = guider_batches(guider, prompt_embeds=(cond, uncond))
    latents = torch.arange(4.0).reshape(1, 4)
    t = torch.tensor(999)  # the loop's timestep, passed to every batch's call as it is
    calls = [denoiser_call(batch, latents, t, encoder_hidden_states=batch.prompt_embeds, scale=2.0) for batch in state]
    return state, calls, latents


def test_denoiser_call_holds_a_batch_and_its_arguments():
    batch = BlockState(x=1)
    assert denoiser_call(batch, 1, 2, key=3) == (batch, (1, 2), {"key": 3})


@pytest.mark.parametrize(
    ("wrap", "unwrap"),
    [
        (lambda p: p, lambda out: out),
        (lambda p: (p,), lambda out: out[0]),
        (lambda p: [*p], lambda out: torch.stack(out)),
        (lambda p: Transformer2DModelOutput(sample=p), lambda out: out.sample),
    ],
    ids=["tensor", "tuple", "list-of-samples", "model-output"],
)
def test_branched_calls_run_as_one_call_and_each_batch_gets_its_share(wrap, unwrap):
    guider = cfg_guider()
    model = RecordingDenoiser(wrap)
    state, calls, latents = branched_calls(guider, wrap)
    results = list(run_denoiser_calls(guider, model, calls, SOURCE_ORDER))

    assert model.batches == [2]
    assert [guider_batch_name(guider, batch) for batch, _ in results] == list(SOURCE_ORDER)
    for batch, output in results:
        assert type(output) is type(wrap(torch.zeros(1)))
        expected = latents * 2.0 + batch.prompt_embeds.sum(-1, keepdim=True)
        assert torch.equal(unwrap(output), expected)


def test_without_merge_each_batch_runs_alone_with_the_guiders_model_hooks():
    guider = cfg_guider()
    model = RecordingDenoiser()
    state, calls, _ = branched_calls(guider)
    results = list(run_denoiser_calls(guider, model, calls, SOURCE_ORDER, merge=False))
    assert model.batches == [1, 1]
    assert [batch for batch, _ in results] == list(state)  # the guider's own order

    hooking = cfg_guider(cls=ModelHookingGuider)
    state, calls, _ = branched_calls(hooking)
    list(run_denoiser_calls(hooking, model, calls, SOURCE_ORDER))
    assert model.batches == [1, 1, 1, 1] and hooking.prepared == hooking.cleaned == 2


class MergeAwareHookingGuider(ModelHookingGuider):
    """A guider that changes the model between batches and can prepare it for one merged call (as the PAG guider
    does): it records the order it was told."""

    def prepare_merged_call(self, identifiers):
        self.merged = identifiers


def test_an_auxiliary_model_the_guider_never_hooks_merges_and_is_not_prepared():
    hooking = cfg_guider(cls=ModelHookingGuider)
    model = RecordingDenoiser()
    _, calls, _ = branched_calls(hooking)
    results = list(run_denoiser_calls(hooking, model, calls, SOURCE_ORDER, hooks=False))
    assert model.batches == [2] and len(results) == 2
    assert not hasattr(hooking, "prepared") and not hasattr(hooking, "cleaned")

    _, calls, _ = branched_calls(hooking)
    list(run_denoiser_calls(hooking, model, calls, SOURCE_ORDER, merge=False, hooks=False))
    assert model.batches == [2, 1, 1] and not hasattr(hooking, "prepared")


def test_a_guider_that_prepares_a_merged_call_gets_one_in_the_sources_order():
    guider = cfg_guider(cls=MergeAwareHookingGuider)
    model = RecordingDenoiser()
    _, calls, _ = branched_calls(guider)
    results = list(run_denoiser_calls(guider, model, calls, SOURCE_ORDER))
    assert model.batches == [2] and guider.prepared == guider.cleaned == 1
    assert guider.merged == list(SOURCE_ORDER) and len(results) == 2

    # a merged output that does not split: told to run one by one again, each batch prepared on its own
    guider = cfg_guider(cls=MergeAwareHookingGuider)
    model = RecordingDenoiser(wrap=lambda p: p[:1])
    _, calls, _ = branched_calls(guider)
    list(run_denoiser_calls(guider, model, calls, SOURCE_ORDER))
    assert model.batches == [2, 1, 1] and guider.merged is None and guider.prepared == 3


def test_arguments_that_do_not_merge_mean_one_call_per_batch():
    guider = cfg_guider()
    model = RecordingDenoiser()
    _, calls, _ = branched_calls(guider, cond=torch.ones(1, 3), uncond=torch.zeros(2, 3))
    results = list(run_denoiser_calls(guider, model, calls, SOURCE_ORDER))
    assert model.batches == [1, 1] and len(results) == 2


def test_an_output_that_does_not_split_evenly_is_recomputed_per_batch():
    guider = cfg_guider()
    model = RecordingDenoiser(wrap=lambda p: p[:1])  # a merged call answering with one sample: no equal shares
    state, calls, _ = branched_calls(guider)
    results = list(run_denoiser_calls(guider, model, calls, SOURCE_ORDER))
    assert model.batches == [2, 1, 1]
    assert [batch for batch, _ in results] == list(state)


def test_shares_split_tensors_lists_tuples_and_model_outputs_along_the_batch():
    assert [s.tolist() for s in _shares(torch.arange(4), 2)] == [[0, 1], [2, 3]]
    assert _shares(torch.arange(3), 2) is None
    assert _shares([1, 2, 3, 4], 2) == [[1, 2], [3, 4]]
    assert _shares([1, 2, 3], 2) is None
    shares = _shares((torch.arange(4), [5, 6]), 2)
    assert [(t.tolist(), items) for t, items in shares] == [([0, 1], [5]), ([2, 3], [6])]
    assert _shares((torch.arange(4), "text"), 2) is None
    first, second = _shares(Transformer2DModelOutput(sample=torch.arange(4)), 2)
    assert isinstance(first, Transformer2DModelOutput) and second.sample.tolist() == [2, 3]
    assert _shares(object(), 2) is None


# -- guider_state ----------------------------------------------------------------------------------------------------
def test_guider_batch_name_is_the_guiders_identifier_of_the_batch():
    guider = cfg_guider()
    state = guider_batches(guider, prompt_embeds=(torch.ones(1, 3), torch.zeros(1, 3)))
    assert [guider_batch_name(guider, b) for b in state] == ["pred_cond", "pred_uncond"]


def test_guider_attributes_hold_for_one_step_and_are_put_back():
    guider = cfg_guider(scale=4.0)
    with guider_attributes(guider, guidance_scale=0.0, norm_threshold=2.5) as inside:
        assert inside is guider
        assert guider.guidance_scale == 0.0 and guider.norm_threshold == 2.5
    assert guider.guidance_scale == 4.0
    assert not hasattr(guider, "norm_threshold")  # an attribute the guider did not have goes again

    with pytest.raises(KeyError), guider_attributes(guider, guidance_scale=9.0):
        raise KeyError("a failing step")
    assert guider.guidance_scale == 4.0


def test_a_per_step_scale_of_zero_turns_original_formulation_cfg_off_for_that_step():
    """Z-Image-style truncation: the generated step wraps its whole guider round in `guider_attributes`."""
    guider = ClassifierFreeGuidance(guidance_scale=4.0, use_original_formulation=True)

    def step(**attributes):
        with guider_attributes(guider, **attributes):
            guider.set_state(step=0, num_inference_steps=2, timestep=torch.tensor(1))
            state = guider_batches(guider, prompt_embeds=(torch.ones(1, 3), torch.zeros(1, 3)))
            for batch in state:
                batch.noise_pred = batch.prompt_embeds[:, :2]  # cond: ones, uncond: zeros
            return len(state), guider(state).pred

    count, pred = step(guidance_scale=0.0)
    assert count == 1 and torch.equal(pred, torch.ones(1, 2))  # one batch: CFG off for this step
    count, pred = step()
    assert count == 2 and torch.equal(pred, torch.full((1, 2), 5.0))  # c + s * (c - u)


# -- ExplicitNoneInputs ----------------------------------------------------------------------------------------------
class _Block(ExplicitNoneInputs, ModularPipelineBlocks):
    @property
    def inputs(self):
        return [InputParam("max_sequence_length", default=512), InputParam("prompt"), InputParam("mask", default=None)]


def test_an_argument_passed_as_none_stays_none_and_an_unpassed_one_takes_its_default():
    block = _Block()
    state = PipelineState()
    state.set("max_sequence_length", None)
    state.set("prompt", "a cat")
    assert block.get_block_state(state).max_sequence_length is None
    plain = ModularPipelineBlocks.get_block_state(block, state)
    assert plain.max_sequence_length == 512  # what diffusers alone would do

    unpassed = PipelineState()
    unpassed.set("prompt", "a cat")
    block_state = block.get_block_state(unpassed)
    assert block_state.max_sequence_length == 512 and block_state.mask is None


# -- guider_batch_label ---------------------------------------------------------------------------------------------
def test_a_batch_the_standard_pipeline_has_no_pass_for_is_labelled_by_its_name():
    from diffusers.guiders import SkipLayerGuidance
    from diffusers.hooks import LayerSkipConfig

    from modularize.emit.runtime.guider_state import guider_batch_label

    guider = SkipLayerGuidance(5.0, 2.0, skip_layer_config=LayerSkipConfig(indices=[0]), skip_layer_guidance_stop=1.0)
    guider.set_state(step=1, num_inference_steps=2, timestep=torch.tensor(500))  # inside its start..stop window
    state = guider.prepare_inputs({"prompt_embeds": (torch.ones(1, 2), torch.zeros(1, 2))})
    labels = {"pred_cond": "cond", "pred_uncond": "uncond"}
    assert [guider_batch_label(guider, batch, labels) for batch in state] == ["cond", "uncond", "pred_cond_skip"]


# -- register_in_diffusers -------------------------------------------------------------------------------------------
def test_registered_classes_are_found_by_name_in_diffusers_and_never_replace_its_own():
    import diffusers
    from diffusers.pipelines.pipeline_loading_utils import _get_pipeline_class

    from modularize.emit.runtime.saved_package import register_in_diffusers

    own = type("ToyGeneratedModularPipeline", (ModularPipeline,), {})
    shadow = type("StableDiffusionXLModularPipeline", (ModularPipeline,), {})
    register_in_diffusers(own, shadow)
    try:
        # what `ModularPipeline.from_pretrained` does with a saved `_class_name`
        assert _get_pipeline_class(ModularPipeline, config={"_class_name": own.__name__}) is own
        assert diffusers.StableDiffusionXLModularPipeline is not shadow
        assert diffusers.StableDiffusionXLModularPipeline.__module__.startswith("diffusers.")
    finally:
        delattr(diffusers, own.__name__)


# -- copying by name -------------------------------------------------------------------------------------------------
def rendered(statements) -> str:
    return cst.Module(body=list(statements)).code


def test_entry_points_are_the_public_definitions_each_defined_once():
    assert entry_points() == {
        "merge_guider_batches": "modularize.emit.runtime.guider_calls.merge_guider_batches",
        "split_guider_predictions": "modularize.emit.runtime.guider_calls.split_guider_predictions",
        "denoiser_call": "modularize.emit.runtime.guider_calls.denoiser_call",
        "run_denoiser_calls": "modularize.emit.runtime.guider_calls.run_denoiser_calls",
        "batch_output": "modularize.emit.runtime.guider_calls.batch_output",
        "fresh_layers": "modularize.emit.runtime.guider_calls.fresh_layers",
        "guider_batch_name": "modularize.emit.runtime.guider_state.guider_batch_name",
        "guider_batch_label": "modularize.emit.runtime.guider_state.guider_batch_label",
        "guider_attributes": "modularize.emit.runtime.guider_state.guider_attributes",
        "ManyBatchGuidance": "modularize.emit.runtime.many_batches.ManyBatchGuidance",
        "ExplicitNoneInputs": "modularize.emit.runtime.explicit_none.ExplicitNoneInputs",
        "PackageBlocks": "modularize.emit.runtime.package_blocks.PackageBlocks",
        "SavedWithPackage": "modularize.emit.runtime.saved_package.SavedWithPackage",
        "register_in_diffusers": "modularize.emit.runtime.saved_package.register_in_diffusers",
        "install_standard_guider": "modularize.emit.runtime.standard_guider.install_standard_guider",
        "perturbed_attention_modules": ("modularize.emit.runtime.perturbed_attention.perturbed_attention_modules"),
        "OneShareOfPerturbedAttention": ("modularize.emit.runtime.perturbed_attention.OneShareOfPerturbedAttention"),
        "guider_runs_unconditional": "modularize.emit.runtime.perturbed_attention.guider_runs_unconditional",
        "StandardPerturbedAttentionGuidance": (
            "modularize.emit.runtime.perturbed_attention.StandardPerturbedAttentionGuidance"
        ),
        "StandardCall": "modularize.emit.runtime.sub_pipeline.StandardCall",
        "sub_pipeline": "modularize.emit.runtime.sub_pipeline.sub_pipeline",
        "WorkflowMember": "modularize.emit.runtime.family.WorkflowMember",
        "FamilyPipeline": "modularize.emit.runtime.family.FamilyPipeline",
        "WorkflowBlocks": "modularize.emit.runtime.family.WorkflowBlocks",
    }


def copied_names(statements) -> list[str]:
    return [
        line.comment.value.removeprefix("# Copied from modularize.emit.runtime.")
        for statement in statements
        for line in statement.leading_lines
        if line.comment is not None
    ]


def test_a_name_brings_what_it_reads_from_its_module_in_the_modules_order():
    batched = runtime_definitions(["merge_guider_batches", "split_guider_predictions", "torch", "latents"])
    assert copied_names(batched) == [
        "guider_calls._UNMERGEABLE",
        "guider_calls._merge_order",
        "guider_calls._concatenated",
        "guider_calls.merge_guider_batches",
        "guider_calls.split_guider_predictions",
    ]
    branched = runtime_definitions(["guider_attributes", "run_denoiser_calls", "denoiser_call"])
    assert copied_names(branched) == [
        "guider_calls._UNMERGEABLE",
        "guider_calls._merge_order",
        "guider_calls._concatenated",
        "guider_calls.denoiser_call",
        "guider_calls.run_denoiser_calls",
        "guider_calls._broadcast_once",
        "guider_calls._shares",
        "guider_state.guider_attributes",
    ]
    assert runtime_definitions(["latents", "_shares"]) == []  # private names are never entry points


def test_a_copy_is_the_modules_source_text_under_its_copied_from_line():
    statement = copied_definition("modularize.emit.runtime.guider_state.guider_attributes")
    text = rendered([statement])
    source = (RUNTIME / "guider_state.py").read_text()
    first, _, body = text.partition("\n")
    assert first == "# Copied from modularize.emit.runtime.guider_state.guider_attributes"
    assert body.startswith("@contextmanager\ndef guider_attributes(guider, **values):\n")
    assert body in source
    # a project comment above a definition is not copied: the `# Copied from` line replaces it
    assert rendered([copied_definition("modularize.emit.runtime.guider_calls._UNMERGEABLE")]) == (
        "# Copied from modularize.emit.runtime.guider_calls._UNMERGEABLE\n_UNMERGEABLE = object()\n"
    )
    with pytest.raises(KeyError, match="no top-level definition"):
        copied_definition("modularize.emit.runtime.guider_calls.nothing")


@pytest.mark.parametrize("module", runtime.MODULES)
def test_runtime_modules_import_only_what_generated_files_import_the_same_way(module):
    """A copied definition reads its module's imports as free names; emit resolves those through `FRAMEWORK`,
    which must name the same objects, or the copy would mean something else than the tested code."""
    tree = ast.parse((RUNTIME / f"{module}.py").read_text())
    assert ast.get_docstring(tree), f"{module} says why it exists"
    imported = {**FRAMEWORK, **UNLESS_DEFINED}
    for node in tree.body:
        if isinstance(node, ast.Import):
            assert all(imported[alias.name] == (alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                assert imported[alias.asname or alias.name] == (node.module, alias.name)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            assert ast.get_docstring(node), f"{module}.{node.name} has a docstring"


# -- installing the standard call's guider ---------------------------------------------------------------------------
class _GuidedPipeline:
    """What `install_standard_guider` reads of a generated pipeline: its argument lists, guider and set-up."""

    guider_arguments = ("guidance_scale", "guidance_rescale", "negative_prompt")
    block_arguments = ("prompt", "negative_prompt")
    _component_specs = {"guider": None}

    def __init__(self):
        self.guider = ClassifierFreeGuidance()
        self._own_guider = self.guider
        self.installs = 0

    def guider_for_standard_call(self, guidance_scale=5.0, guidance_rescale=0.0, negative_prompt=None):
        return ClassifierFreeGuidance(guidance_scale=guidance_scale, guidance_rescale=guidance_rescale)

    def update_components(self, guider):
        self.guider = guider
        self.installs += 1


def test_a_pipeline_of_blocks_without_a_guider_installs_none():
    from modularize.emit.runtime.standard_guider import install_standard_guider

    pipe = _GuidedPipeline()
    pipe._component_specs = {}  # built from one block that reads `guidance_scale` itself
    install_standard_guider(pipe, {"guidance_scale": 7.0}, strict=True)
    assert pipe.installs == 0


def test_the_standard_guider_is_installed_once_per_set_of_arguments():
    from modularize.emit.runtime.standard_guider import install_standard_guider

    pipe = _GuidedPipeline()
    install_standard_guider(pipe, {"prompt": "a cat", "guidance_scale": 7.0, "guidance_rescale": 0.5}, strict=False)
    assert (pipe.guider.guidance_scale, pipe.guider.guidance_rescale, pipe.installs) == (7.0, 0.5, 1)
    install_standard_guider(pipe, {"guidance_scale": 7.0, "guidance_rescale": 0.5}, strict=False)
    assert pipe.installs == 1  # the same arguments: the guider stays
    install_standard_guider(pipe, {"guidance_scale": 7.0}, strict=False)
    assert (pipe.guider.guidance_rescale, pipe.installs) == (0.5, 1)  # what is left out keeps the guider as it is
    install_standard_guider(pipe, {"guidance_scale": 6.0}, strict=False)
    # a changed scale installs the guider anew, keeping the rescale the earlier call set (never silently dropped)
    assert (pipe.guider.guidance_scale, pipe.guider.guidance_rescale, pipe.installs) == (6.0, 0.5, 2)
    install_standard_guider(pipe, {"guidance_scale": 6.0}, strict=True)
    assert pipe.installs == 3  # translating a standard call always installs its guider, for exactly its arguments
    assert pipe.guider.guidance_rescale == 0.0


def test_a_call_with_what_translating_a_standard_call_gave_keeps_the_guider_it_installed():
    """`pipe(**pipe.translate_standard_call(negative_prompt=..., true_cfg_scale=4.0))`: the translated arguments
    hold `negative_prompt` (the blocks read it) but not `true_cfg_scale`; the guider installed for both stays."""
    from modularize.emit.runtime.standard_guider import install_standard_guider

    pipe = _GuidedPipeline()
    install_standard_guider(pipe, {"negative_prompt": "blurry", "guidance_scale": 4.0}, strict=True)
    installed = pipe.guider
    install_standard_guider(pipe, {"prompt": "a cat", "negative_prompt": "blurry"}, strict=False)
    assert pipe.guider is installed and pipe.guider.guidance_scale == 4.0


def test_a_guider_the_user_installed_is_never_replaced_by_a_call():
    from modularize.emit.runtime.standard_guider import install_standard_guider

    pipe = _GuidedPipeline()
    theirs = ClassifierFreeGuidance(guidance_scale=3.0, guidance_rescale=0.7)
    pipe.update_components(guider=theirs)
    install_standard_guider(pipe, {"prompt": "a cat", "negative_prompt": "blurry"}, strict=False)
    assert pipe.guider is theirs  # `negative_prompt` goes to the blocks, the guider stays theirs
    with pytest.raises(ValueError, match=r"\['guidance_rescale', 'guidance_scale'\] would configure the guider"):
        install_standard_guider(pipe, {"guidance_scale": 7.0, "guidance_rescale": 0.0}, strict=False)
    assert pipe.guider is theirs and theirs.guidance_rescale == 0.7
    pipe.block_arguments += ("guidance_scale",)  # the blocks read it too (a guidance embedding, say)
    install_standard_guider(pipe, {"guidance_scale": 3.0}, strict=False)  # what their guider holds: fine
    with pytest.raises(ValueError, match=r"\['guidance_scale'\] would configure the guider"):
        install_standard_guider(pipe, {"guidance_scale": 7.0}, strict=False)  # another value than theirs
    install_standard_guider(pipe, {"guidance_scale": 7.0}, strict=True)
    assert pipe.guider is not theirs and pipe.guider.guidance_scale == 7.0  # asked for the standard call explicitly


def test_merging_fields_of_per_layer_lists_joins_them_layer_by_layer_and_each_batch_gets_a_fresh_list():
    from modularize.emit.runtime.guider_calls import fresh_layers

    guider = cfg_guider()
    layers = [torch.ones(1, 2), torch.ones(1, 3)]
    state = guider_batches(guider, prompt_embeds=(torch.ones(1, 3), torch.zeros(1, 3)), states=layers)
    (merged,) = merge_guider_batches(guider, state, SOURCE_ORDER, layers=("states",))
    assert [tuple(t.shape) for t in merged.states] == [(2, 2), (2, 3)]
    fresh = fresh_layers(layers)
    assert fresh == layers and fresh is not layers and fresh_layers(None) is None


def test_a_value_the_source_passed_once_is_passed_once_to_the_merged_call():
    """SparseCtrl's condition (one sample, broadcast over the batch): each guider batch holds the same object, and
    the merged call gets it once, as the standard pipeline's one call did; concatenated it would no longer
    broadcast over two prompts' samples."""
    guider = cfg_guider()
    guider.set_state(step=0, num_inference_steps=4, timestep=torch.tensor(1.0))
    state = guider.prepare_inputs({"x": (torch.ones(2, 3), torch.zeros(2, 3))})
    condition = torch.full((1, 3), 5.0)
    seen = []

    def model(x, condition):
        seen.append(tuple(condition.shape))
        return x + condition

    calls = [denoiser_call(batch, batch.x, condition=condition) for batch in state]
    results = dict(
        (guider_batch_name(guider, batch), output)
        for batch, output in run_denoiser_calls(guider, model, calls, SOURCE_ORDER)
    )
    assert seen == [(1, 3)]  # one merged call, the condition once
    assert torch.equal(results["pred_cond"], torch.full((2, 3), 6.0))
    assert torch.equal(results["pred_uncond"], torch.full((2, 3), 5.0))
    same_size = [denoiser_call(batch, batch.x, condition=torch.ones(2, 3)) for batch in state]
    seen.clear()
    list(
        run_denoiser_calls(
            guider, model, [same_size[0], (same_size[1][0], same_size[1][1], same_size[0][2])], SOURCE_ORDER
        )
    )
    assert seen == [(4, 3)]  # a value of the samples' batch (one the source doubled, a control image): concatenated


# -- a built pipeline called as the standard one ---------------------------------------------------------------------
class _BuiltPipeline:
    """What `sub_pipeline` and `StandardCall` read of a generated pipeline: its specs, set-up and standard call."""

    standard_outputs = {"image_embeds": "embeds", "negative_image_embeds": "negative_embeds"}
    _config_specs = {"batch_guider_calls": None}

    def __init__(self):
        self.components, self.calls = {}, []

    def update_components(self, **components):
        self.components.update(components)

    def translate_standard_call(self, **kwargs):
        return {name: value for name, value in kwargs.items() if name != "guidance_scale"}

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return {"embeds": kwargs["prompt"] + "+", "negative_embeds": "-"}


class _BuiltBlocks:
    def init_pipeline(self):
        return _BuiltPipeline()


def test_a_built_pipeline_is_built_once_per_set_of_components_and_returns_the_standard_value():
    from diffusers.pipelines.kandinsky import KandinskyPriorPipelineOutput

    from modularize.emit.runtime.sub_pipeline import sub_pipeline

    class Owner:
        _config_specs = {"batch_guider_calls": None}
        batch_guider_calls = False

    owner, prior, encoder = Owner(), object(), object()
    output_class = "diffusers.pipelines.kandinsky:KandinskyPriorPipelineOutput"
    built = sub_pipeline(owner, _BuiltBlocks, output_class, prior=prior, image_encoder=encoder, tokenizer=None)
    assert sub_pipeline(owner, _BuiltBlocks, output_class, prior=prior, image_encoder=encoder) is built
    # the components given, not those left `None`; the owner's settings the built pipeline has too
    assert built.pipeline.components == {"prior": prior, "image_encoder": encoder, "batch_guider_calls": False}
    assert built(prompt="cat", guidance_scale=4.0, return_dict=False) == ("cat+", "-")
    assert built.pipeline.calls[-1] == {"prompt": "cat"}
    returned = built(prompt="dog")
    assert isinstance(returned, KandinskyPriorPipelineOutput) and returned.image_embeds == "dog+"
    # other components are another pipeline
    assert sub_pipeline(owner, _BuiltBlocks, output_class, prior=object(), image_encoder=encoder) is not built


# -- a family's pipeline (`family.py`) ------------------------------------------------------------------------------
class _Scheduler:
    def __init__(self, clip_sample):
        self.config = {"clip_sample": clip_sample}


class _Registering:
    """Stands for `ModularPipeline` here: components are attributes; the blocks' state is not needed."""

    def register_components(self, **kwargs):
        self.__dict__.update(kwargs)


class _Plain(_Registering):
    block_arguments = ("prompt",)
    label = "plain"

    @property
    def size(self):
        return 8


class _Edit(_Registering):
    block_arguments = ("prompt", "image")

    @property
    def size(self):
        return 16

    def _adapt_components(self, scheduler):
        scheduler.config = {**scheduler.config, "clip_sample": False}  # what an outdated-config fix does

    def edited(self):
        return self.scheduler.config["clip_sample"]


class _Family(FamilyPipeline, _Registering):
    workflow_pipelines = {"edit": _Edit, "plain": _Plain}
    workflow_triggers = (("edit", "image"), ("plain", None))
    default_workflow = "plain"
    adapted_components = {"edit": (("scheduler",), False)}


def test_a_family_pipeline_takes_each_member_from_the_workflow_running():
    pipe = _Family()
    assert pipe.size == 8 and pipe.block_arguments == ("prompt",)  # the default's, outside a call
    with pipe.running_workflow("edit"):
        assert pipe.size == 16 and pipe.block_arguments == ("prompt", "image")
    assert pipe.label == "plain"  # only one workflow defines it: that one's
    assert pipe.workflow_for({"prompt": "a", "image": object()}) == "edit"
    assert pipe.workflow_for({"prompt": "a", "image": None}) == "plain"  # as `AutoPipelineBlocks` selects


def test_a_workflow_runs_with_its_own_adapted_components_and_no_other_does():
    pipe = _Family()
    scheduler = _Scheduler(clip_sample=True)
    pipe.register_components(scheduler=scheduler)
    assert pipe.scheduler is scheduler and scheduler.config["clip_sample"] is True  # registering adapts nothing
    with pipe.running_workflow("edit"):
        assert pipe.edited() is False
        adapted = pipe.scheduler
        assert adapted is not scheduler
    assert pipe.scheduler is scheduler and scheduler.config["clip_sample"] is True
    with pipe.running_workflow("edit"):
        assert pipe.scheduler is adapted  # once per set of components
    pipe.register_components(scheduler=_Scheduler(clip_sample=True))
    with pipe.running_workflow("edit"):
        assert pipe.scheduler is not adapted  # new components are adapted anew
    with pipe.running_workflow("plain"):
        assert pipe.scheduler.config["clip_sample"] is True


class _Sketch(_Registering):
    block_arguments = ("prompt", "sketch_image")

    def _from_standard_arguments(self, kwargs, strict):
        unknown = set(kwargs) - set(self.block_arguments)
        if strict and unknown:
            raise TypeError(f"unexpected {sorted(unknown)}")
        return kwargs


class _SketchFamily(FamilyPipeline, _Registering):
    workflow_pipelines = {"edit": _Edit, "sketch": _Sketch, "plain": _Plain}
    workflow_triggers = (("edit", "image"), ("sketch", "sketch_image"), ("plain", None))
    default_workflow = "plain"
    renamed_arguments = {"sketch": {"image": "sketch_image"}}


def test_a_workflow_taking_an_argument_under_its_own_name_is_translated_by_workflow():
    """The sketch workflow's standard call gives `image`, which selects `edit` here: named, it is `sketch_image`."""
    pipe = _SketchFamily()
    picture = object()
    kwargs = pipe.translate_standard_call(workflow="sketch", prompt="a", image=picture)
    assert kwargs == {"prompt": "a", "sketch_image": picture}
    assert pipe.workflow_for(kwargs) == "sketch"
    assert pipe.workflow_for({"prompt": "a", "image": picture}) == "edit"
    with pytest.raises(ValueError, match="no workflow 'sketchy'"):
        pipe.translate_standard_call(workflow="sketchy", prompt="a")


class _SpecHolding(_Registering):
    def get_component_spec(self, name):
        return ("the pipeline's", name)


class _GuidedFamily(FamilyPipeline, _SpecHolding):
    workflow_pipelines = {"edit": _Edit, "plain": _Plain}
    workflow_triggers = (("edit", "image"), ("plain", None))
    default_workflow = "plain"


def test_a_running_workflow_creates_components_from_its_own_specs():
    """The guider a workflow's standard call installs is created from that workflow's spec (SDXL InstructPix2Pix's
    three-way guider), not from the one spec per name the family's pipeline holds."""
    from types import SimpleNamespace

    def spec(kind):
        return SimpleNamespace(name="guider", kind=kind)

    workflows = {
        "edit": SimpleNamespace(expected_components=[spec("three-way")]),
        "plain": SimpleNamespace(expected_components=[spec("cfg")]),
    }
    pipe = _GuidedFamily()
    pipe._blocks = SimpleNamespace(sub_blocks={"workflows": SimpleNamespace(sub_blocks=workflows)})
    assert pipe.get_component_spec("guider") == ("the pipeline's", "guider")  # no workflow running
    with pipe.running_workflow("edit"):
        created = pipe.get_component_spec("guider")
        assert created.kind == "three-way" and created is not workflows["edit"].expected_components[0]
        assert pipe.get_component_spec("vae") == ("the pipeline's", "vae")  # a spec it does not declare
    with pipe.running_workflow("plain"):
        assert pipe.get_component_spec("guider").kind == "cfg"


def test_workflows_adapt_components_when_given_and_from_the_components_given():
    """Adapting may draw from the global random generator (AnimateDiff builds its motion UNet): it happens when
    components are registered, as in each workflow's own pipeline, never during a call; and a component registered
    while a workflow runs (its guider installed) does not make the adapted copies into originals."""
    pipe = _Family()
    calls = []
    original = vars(_Edit)["_adapt_components"]

    def counting(self, scheduler):
        calls.append(scheduler)
        return original(self, scheduler)

    with_counting = type("_CountingEdit", (_Edit,), {"_adapt_components": counting})
    pipe.workflow_pipelines = {"edit": with_counting, "plain": _Plain}
    scheduler = _Scheduler(clip_sample=True)
    pipe.register_components(scheduler=scheduler)
    assert len(calls) == 1  # adapted on registration
    with pipe.running_workflow("edit"):
        adapted = pipe.scheduler
        pipe.register_components(guider="installed while edit runs")
        assert pipe.scheduler is adapted and len(calls) == 1
    assert pipe.scheduler is scheduler
    with pipe.running_workflow("edit"):
        assert pipe.scheduler is adapted and len(calls) == 1  # nothing adapted during a call


class _Prior(_Registering):
    block_arguments = ("prompt",)


class _Derived(_Registering):
    block_arguments = ("image",)

    @property
    def image_processor(self):
        return "derived by the image-to-image workflow"


class _PriorFamily(FamilyPipeline, _Registering):
    workflow_pipelines = {"img2img": _Derived, "prior": _Prior}
    workflow_triggers = (("img2img", "image"), ("prior", None))
    default_workflow = "prior"


def test_a_name_one_workflow_derives_and_another_registers_as_a_component_is_each_ones():
    """Kandinsky 2.2: image-to-image derives `image_processor`, its prior takes one as a component."""
    pipe = _PriorFamily()
    pipe.register_components(image_processor="the prior's component")
    assert pipe.image_processor == "the prior's component"
    with pipe.running_workflow("img2img"):
        assert pipe.image_processor == "derived by the image-to-image workflow"
    with pipe.running_workflow("prior"):
        assert pipe.image_processor == "the prior's component"


def test_a_copied_runtime_definition_is_made_once_and_what_it_gives_is_what_computing_it_gives():
    """The runtime's definitions are copied as the same statements every time, with their code and names known
    once a process: what a file's code and free names come out as is what printing and following them gives."""
    import libcst as cst

    from modularize.cst.dataflow import flow_of
    from modularize.emit import package
    from modularize.emit.runtime import copied, copied_definition, runtime_definitions
    from modularize.frontend.parse import code, module_code

    first = runtime_definitions(["merge_guider_batches", "run_denoiser_calls"])
    assert [id(s) for s in first] == [
        id(s) for s in runtime_definitions(["merge_guider_batches", "run_denoiser_calls"])
    ]
    mixin = copied_definition("modularize.emit.runtime.explicit_none.ExplicitNoneInputs")
    for statement in [*first, mixin]:
        found = copied(statement)
        assert found is not None and found.code == code(statement)
        flow = flow_of([statement])
        assert (found.reads, found.writes) == (flow.reads, flow.writes)
    assert copied(mixin.with_changes()) is None  # (a changed copy is printed as any statement)
    own = list(cst.parse_module("import torch\n\n\nx = merge_guider_batches(torch)\n").body)
    body = [own[0], *first, mixin, own[1]]
    assert package._module_text(body) == module_code(cst.Module(body=body))
    assert sorted(package._free_names_of_file(body)) == sorted(package.free_names(body))
