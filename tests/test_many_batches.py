"""Guidance over more than two batches (InstructPix2Pix's text, image and unconditional batches): the detector's
parts on snippets, the split of a helper's tripled results, and the runtime guider that runs one batch per part.
"""

from __future__ import annotations

import libcst as cst
import pytest
import torch
from diffusers.modular_pipelines.modular_pipeline import BlockState

from modularize.analysis.guidance.doubled_batch import cat_elements, halved_batch, split_batch
from modularize.analysis.guidance.helper_results import doubled_results, kept_positions
from modularize.analysis.guidance.many_batches import (
    conditional_part,
    conditional_positions,
    guider_positions,
    in_source_order,
    many_batch_branch,
    split_parts,
)
from modularize.analysis.guidance.pairing import merged_mirrors
from modularize.emit.runtime.many_batches import ManyBatchGuidance
from modularize.normalize.halved_results import HelperDoublesResults, with_halved_results
from modularize.planning.plan import batch_identifiers

from .test_detectors import fields, rendered, snippet


def expression(text: str) -> cst.BaseExpression:
    return cst.parse_expression(text)


def statement(text: str) -> cst.BaseStatement:
    return cst.parse_statement(text + "\n")


def function(text: str) -> cst.FunctionDef:
    return cst.parse_module(text).body[0]


# --- recognizing the parts


def test_a_batch_is_split_into_as_many_parts_as_the_chunk_says():
    assert split_batch(expression("pred.chunk(3)")) == ("pred", 3)
    assert split_batch(expression("torch.chunk(pred, 4, dim=0)")) == ("pred", 4)
    assert split_batch(expression("pred.chunk(3, dim=1)")) is None  # along the features: not the batch
    assert halved_batch(expression("pred.chunk(3)")) is None  # two halves only
    assert halved_batch(expression("pred.chunk(2)")) == "pred"


def test_a_repeat_of_any_count_is_that_many_parts():
    assert [cst.Module([]).code_for_node(e) for e in cat_elements(expression("torch.cat([x] * 3)"))] == ["x"] * 3
    assert cat_elements(expression("torch.cat([x] * n)")) is None  # a count that is not a literal


def test_split_parts_names_each_part_in_order():
    assert split_parts(statement("a, b, c = noise.chunk(3)")) == ("noise", ("a", "b", "c"))
    assert split_parts(statement("a, b = noise.chunk(3)")) is None  # names and parts disagree


def test_a_branch_splitting_into_three_parts_hands_on_what_it_computes_under_the_model_output():
    branch = [
        statement("t, i, u = pred.chunk(3)"),
        statement("pred = u + s * (t - i) + r * (i - u)"),
    ]
    assert many_batch_branch(branch) == ("pred", ("t", "i", "u"), "pred")
    assert many_batch_branch(branch[:1]) is None  # the split alone hands on nothing
    assert many_batch_branch([statement("u, c = pred.chunk(2)"), branch[1]]) is None  # two halves: CFG's own


# --- which part is the conditional one


def test_the_conditional_part_is_the_one_every_concatenation_keeps_the_flag_off_value_in():
    prompt = conditional_positions(cat_elements(expression("torch.cat([x, n, n])")), expression("x"))
    image = conditional_positions(cat_elements(expression("torch.cat([y, y, z])")), expression("y"))
    assert (prompt, image) == ({0}, {0, 1})
    assert conditional_part([prompt, image], 3) == 0
    assert conditional_part([image], 3) is None  # part 0 or 1: cannot be told
    assert conditional_part([frozenset({0}), frozenset({2})], 3) is None  # they disagree
    assert conditional_part([frozenset({0, 1, 2})], 3) is None  # a repeat says nothing


def test_guider_batches_take_the_conditional_part_first_then_the_rest_in_source_order():
    assert guider_positions(0, 3) == (0, 1, 2)
    assert guider_positions(2, 3) == (2, 0, 1)
    assert batch_identifiers(3) == ("pred_cond", "pred_uncond", "pred_uncond_2")
    assert in_source_order((2, 0, 1)) == ("pred_uncond", "pred_uncond_2", "pred_cond")
    assert in_source_order((1, 0)) == ("pred_uncond", "pred_cond")  # two-way CFG, unconditional first


# --- helpers returning tripled results


TRIPLING_HELPER = """\
def encode(self, x, guided):
    x = self.encoder(x)
    if guided:
        blank = torch.zeros_like(x)
        x = torch.cat([x, x, blank], dim=0)
    if x.dtype != self.encoder.dtype:
        x = x.to(dtype=self.encoder.dtype)
    return x * self.scale
"""


def test_a_helper_moving_and_scaling_its_tripled_result_still_returns_it_tripled():
    helper = function(TRIPLING_HELPER)
    assert doubled_results(helper, "guided") == (True,)
    assert kept_positions(helper, "guided", 3) == [frozenset({0, 1})]


def test_a_helper_that_mixes_its_tripled_result_with_another_value_does_not():
    helper = function(TRIPLING_HELPER.replace("return x * self.scale", "return x[:1]"))
    assert doubled_results(helper, "guided") is None


def test_tripled_results_are_split_where_call_receives_them_one_name_per_part():
    body = [statement("embeds = self.encode(prompt, guided)"), statement("use(embeds)")]
    found = HelperDoublesResults(body[0], ["embeds"], expression("guided"), (0, 1, 2))
    split, _ = with_halved_results(body, found, set())
    assert rendered(split).splitlines()[1:6] == [
        "negative_embeds = None",
        "negative_embeds_2 = None",
        "if guided:",
        "    embeds, negative_embeds, negative_embeds_2 = embeds.chunk(3)",
        "    embeds = torch.cat([embeds, negative_embeds, negative_embeds_2])",
    ]


# --- the detector on a snippet


THREE_WAY_LOOP = """\
both = guidance_scale > 1.0
image_latents = latents * 0.5
blank_latents = torch.zeros_like(image_latents)
if both:
    prompt_embeds = torch.cat([prompt_embeds, negative_prompt_embeds, negative_prompt_embeds])
    image_latents = torch.cat([image_latents, image_latents, blank_latents])
for i, t in enumerate(timesteps):
    latent_model_input = torch.cat([latents] * 3) if both else latents
    latent_model_input = torch.cat([latent_model_input, image_latents], dim=1)
    noise_pred = self.unet(latent_model_input, t, encoder_hidden_states=prompt_embeds)[0]
    if both:
        by_text, by_image, by_nothing = noise_pred.chunk(3)
        noise_pred = by_nothing + guidance_scale * (by_text - by_image) + guidance_scale_2 * (by_image - by_nothing)
    latents = self.scheduler.step(noise_pred, t, latents)[0]
"""


def three_way(body: str = THREE_WAY_LOOP):
    return snippet(body)


def test_three_way_guidance_pairs_every_input_with_one_value_per_part():
    pattern = three_way().batched()
    assert pattern.batch_order == ("pred_cond", "pred_uncond", "pred_uncond_2")
    # the image-guided batch shares the conditional one's image latents: the input mixed from them too
    assert fields(pattern) == [
        ("prompt_embeds", "prompt_embeds", "negative_prompt_embeds"),
        ("latent_model_input", "latent_model_input", "latent_model_input"),
    ]
    assert [f.others for f in pattern.fields] == [("negative_prompt_embeds",), ("negative_latent_model_input",)]
    assert [(s.target, s.cond, s.uncond, s.others) for s in pattern.cat_sites] == [
        ("prompt_embeds", "prompt_embeds", "negative_prompt_embeds", ("negative_prompt_embeds",)),
        ("image_latents", "image_latents", "image_latents", ("blank_latents",)),
    ]
    # the whole branch runs in the guider, on the parts put back in the source's order
    assert pattern.combine.bindings[0] == ("noise_pred", "torch.cat([pred_cond, pred_uncond, pred_uncond_2])")


def test_the_input_mixed_in_the_loop_is_mirrored_for_the_part_that_differs_before_it_is_rebound():
    pattern = three_way().batched()
    ((_, mirrored),) = pattern.mirrored
    assert [line.strip() for line in rendered(mirrored.nodes).splitlines() if "torch.cat" in line] == [
        "negative_latent_model_input = torch.cat([latent_model_input, blank_latents], dim=1)",
        "latent_model_input = torch.cat([latent_model_input, image_latents], dim=1)",
    ]


def test_three_parts_whose_conditional_one_no_concatenation_tells_are_refused():
    body = THREE_WAY_LOOP.replace(
        "prompt_embeds = torch.cat([prompt_embeds, negative_prompt_embeds, negative_prompt_embeds])",
        "prompt_embeds = torch.cat([negative_prompt_embeds, negative_prompt_embeds, negative_prompt_embeds])",
    )
    with pytest.raises(Exception, match="splits into 3 parts, and which one is conditional"):
        three_way(body).batched()


def test_a_repeat_for_two_parts_beside_a_split_into_three_is_refused():
    body = THREE_WAY_LOOP.replace("torch.cat([latents] * 3)", "torch.cat([latents] * 2)")
    with pytest.raises(Exception, match="unrecognized CFG batching"):
        three_way(body).batched()


# --- merging the mirrors of several pairings


def test_mirrors_of_one_statement_from_several_pairings_stay_beside_it():
    line = statement("x = f(a)")
    first = ((line, cst.FlattenSentinel([statement("guard()"), line, statement("n = f(na)")])),)
    second = ((line, cst.FlattenSentinel([line, statement("n_2 = f(na_2)")])),)
    ((kept, merged),) = merged_mirrors([first, second])
    assert kept is line
    assert rendered(merged.nodes).splitlines() == ["guard()", "x = f(a)", "n_2 = f(na_2)", "n = f(na)"]


# --- the guider


class ThreeWay(ManyBatchGuidance):
    _input_predictions = ["pred_cond", "pred_uncond", "pred_uncond_2"]

    def forward(self, pred_cond, pred_uncond=None, pred_uncond_2=None):
        return (pred_cond, pred_uncond, pred_uncond_2)


def test_the_guider_hands_each_batch_its_part_of_every_field():
    guider = ThreeWay(guidance_scale=5.0)
    guider.set_state(step=0, num_inference_steps=4, timestep=torch.tensor(1.0))
    state = BlockState(text=1, blank=2, blank_2=3, latents=7)
    batches = guider.prepare_inputs_from_block_state(state, {"embeds": ("text", "blank", "blank_2"), "x": "latents"})
    assert [b.embeds for b in batches] == [1, 2, 3]
    assert [b.x for b in batches] == [7, 7, 7]
    assert [getattr(b, guider._identifier_key) for b in batches] == list(ThreeWay._input_predictions)
    for batch, value in zip(batches, (10, 20, 30), strict=True):
        batch.noise_pred = value
    assert guider(batches) == (10, 20, 30)


def test_the_guider_runs_the_conditional_batch_alone_when_it_is_off_whatever_its_scale():
    off = ThreeWay(guidance_scale=5.0, enabled=False)
    on_at_one = ThreeWay(guidance_scale=1.0)  # on exactly when `enabled` (the source's own condition) says
    assert (off.num_conditions, on_at_one.num_conditions) == (1, 3)
    state = BlockState(text=1, blank=2, blank_2=3)
    (batch,) = off.prepare_inputs_from_block_state(state, {"embeds": ("text", "blank", "blank_2")})
    assert batch.embeds == 1


def test_the_guider_is_on_only_within_its_steps():
    guider = ThreeWay(start=0.5)
    guider.set_state(step=0, num_inference_steps=4, timestep=torch.tensor(1.0))
    assert guider.num_conditions == 1
    guider.set_state(step=2, num_inference_steps=4, timestep=torch.tensor(1.0))
    assert guider.num_conditions == 3
