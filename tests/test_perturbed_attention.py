"""Perturbed-attention guidance: the detector and its normalization on snippets, and the guider packages carry.

The detector finds the branches a PAG pipeline switches with its flag, the normalization reads `__call__` with PAG
off (what is left is the pipeline's CFG), and `StandardPerturbedAttentionGuidance` adds PAG back exactly as
diffusers' `PAGMixin` computes it: its batches, its combine, and its perturbed attention, bit for bit.
"""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest
import torch
from diffusers.models.attention_processor import (
    Attention,
    AttnProcessor2_0,
    PAGCFGIdentitySelfAttnProcessor2_0,
    PAGIdentitySelfAttnProcessor2_0,
)
from diffusers.modular_pipelines.modular_pipeline import BlockState
from diffusers.pipelines.pag.pag_utils import PAGMixin

from modularize.analysis.guidance.perturbed_attention import find_perturbed_attention
from modularize.analysis.rewrite_context import call_body
from modularize.emit.runtime.perturbed_attention import (
    StandardPerturbedAttentionGuidance,
    guider_runs_unconditional,
    perturbed_attention_modules,
)
from modularize.errors import ConversionError
from modularize.frontend.class_facts import analyze_class
from modularize.frontend.parse import find_pipeline_class, parse_source
from modularize.normalize.perturbed_attention import without_perturbed_attention

PIPELINE = """\
import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.pag.pag_utils import PAGMixin


class SnippetPipeline(DiffusionPipeline, PAGMixin):
    def __init__(self, unet, scheduler, layers="mid"):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        {set_layers}

    @property
    def cfg(self):
        return self._guidance_scale > 1

    @property
    def pag(self):
        return self._pag_scale > 0

    def __call__(self, embeds, negative, latents, timesteps, guidance_scale=5.0, push=3.0, fade=0.0):
        self._guidance_scale = guidance_scale
        self._pag_scale = push
        self._pag_adaptive_scale = fade
{body}
        return latents
"""

BODY = """\
if self.pag:
    embeds = self._prepare_perturbed_attention_guidance(embeds, negative, self.cfg)
elif self.cfg:
    embeds = torch.cat([negative, embeds])
if self.pag:
    self._set_pag_attn_processor(pag_applied_layers=self.pag_applied_layers, do_classifier_free_guidance=self.cfg)
for t in timesteps:
    rows = torch.cat([latents] * (embeds.shape[0] // latents.shape[0]))
    pred = self.unet(rows, t, encoder_hidden_states=embeds).sample
    if self.pag:
        pred = self._apply_perturbed_attention_guidance(pred, self.cfg, self._guidance_scale, t)
    elif self.cfg:
        uncond, cond = pred.chunk(2)
        pred = uncond + self._guidance_scale * (cond - uncond)
    latents = self.scheduler.step(pred, t, latents).prev_sample
"""


def analyzed(body: str = BODY, set_layers: str = "self.set_pag_applied_layers(layers)"):
    text = PIPELINE.format(body=textwrap.indent(textwrap.dedent(body), " " * 8).rstrip("\n"), set_layers=set_layers)
    source = parse_source(text, "snippet.py")
    facts = analyze_class(source, find_pipeline_class(source))
    return source, facts, call_body(facts)


def test_the_branches_on_the_pag_flag_and_what_configures_the_guider_are_found():
    source, facts, body = analyzed()
    found = find_perturbed_attention(source, facts, body)
    assert cst.Module([]).code_for_node(found.flag) == "self.pag"
    assert len(found.branches) == 3  # the conditionings, the processors, the combine
    assert cst.Module([]).code_for_node(found.cfg_flag) == "self.cfg"
    assert (found.scale, found.adaptive_scale, found.layers) == ("push", "fade", '"mid"')
    assert len(found.settings) == 2 and len(found.batch_ratio_repeats) == 1


def test_call_is_read_with_pag_off():
    source, facts, body = analyzed()
    normalized, _ = without_perturbed_attention(body, find_perturbed_attention(source, facts, body))
    text = cst.Module(normalized).code
    assert "pag" not in text.replace("self._guidance_scale", "")
    assert "if self.cfg:\n    embeds = torch.cat([negative, embeds])" in text
    assert "rows = (torch.cat([latents] * 2) if self.cfg else latents)" in text
    assert "    if self.cfg:\n        uncond, cond = pred.chunk(2)" in text


def test_the_pipelines_own_pag_processors_are_named_for_the_guider():
    source, facts, body = analyzed(set_layers="self.set_pag_applied_layers(layers, pag_attn_processors=(A(), B()))")
    assert find_perturbed_attention(source, facts, body).processors == ("A", "B")


def test_a_pipeline_without_the_mixin_methods_has_no_pag():
    source, facts, body = analyzed(body="for t in timesteps:\n    latents = self.unet(latents, t).sample\n")
    assert find_perturbed_attention(source, facts, body) is None


@pytest.mark.parametrize(
    ("body", "set_layers", "message"),
    [
        (BODY, "self.set_pag_applied_layers(layers, pag_attn_processors=(A(1), B()))", "constructed without"),
        (BODY.replace("if self.pag:\n    self._set_pag", "if self.cfg:\n    self._set_pag"), None, "one flag"),
        (BODY.replace("for t in timesteps:", "keep = self.pag\nfor t in timesteps:"), None, "read outside"),
        (BODY, "pass", "does not call `self.set_pag_applied_layers"),
    ],
)
def test_pag_the_guider_cannot_compute_is_refused_where_it_is_written(body, set_layers, message):
    source, facts, statements = analyzed(body, set_layers or "self.set_pag_applied_layers(layers)")
    with pytest.raises(ConversionError, match=message):
        find_perturbed_attention(source, facts, statements)


# -- the guider --------------------------------------------------------------------------------------------------
class _Denoiser(torch.nn.Module):
    """Self-attention in `down` and `mid`, cross-attention in `mid` too."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.down = torch.nn.ModuleDict({"attn1": Attention(8, heads=2, dim_head=4)})
        self.mid = torch.nn.ModuleDict(
            {"attn1": Attention(8, heads=2, dim_head=4), "attn2": Attention(8, cross_attention_dim=6, heads=2)}
        )
        for module in self.modules():
            if isinstance(module, Attention):
                module.set_processor(AttnProcessor2_0())

    def forward(self, hidden_states):
        hidden_states = self.down["attn1"](hidden_states)
        return self.mid["attn1"](hidden_states)


def test_layers_are_selected_as_the_pag_pipelines_select_them():
    denoiser = _Denoiser()
    assert perturbed_attention_modules(denoiser, "mid") == [denoiser.mid["attn1"]]  # not the cross-attention
    assert perturbed_attention_modules(denoiser, ["mid", "down"]) == [denoiser.mid["attn1"], denoiser.down["attn1"]]
    with pytest.raises(ValueError, match="Cannot find PAG layer"):
        perturbed_attention_modules(denoiser, "up")


def _guider(**config) -> StandardPerturbedAttentionGuidance:
    guider = StandardPerturbedAttentionGuidance(**config)
    guider.set_state(step=0, num_inference_steps=4, timestep=torch.tensor(900))
    return guider


def test_batches_take_the_conditional_inputs_again_for_the_perturbed_one():
    data = BlockState(embeds=torch.ones(1), negative=torch.zeros(1))
    fields = {"embeds": ("embeds", "negative")}
    both = _guider(guidance_scale=5.0, perturbed_guidance_scale=3.0)
    names = [getattr(b, both._identifier_key) for b in both.prepare_inputs_from_block_state(data, fields)]
    assert names == ["pred_cond", "pred_uncond", "pred_cond_skip"]
    assert guider_runs_unconditional(both)
    pag_only = _guider(guidance_scale=1.0, perturbed_guidance_scale=3.0)
    batches = pag_only.prepare_inputs_from_block_state(data, fields)
    assert [getattr(b, pag_only._identifier_key) for b in batches] == ["pred_cond", "pred_cond_skip"]
    assert all(torch.equal(batch.embeds, torch.ones(1)) for batch in batches)  # not the unconditional input
    assert not guider_runs_unconditional(pag_only) and pag_only.num_conditions == 2
    assert _guider(perturbed_guidance_scale=0.0).num_conditions == 2  # CFG alone


class _Mixin(PAGMixin):
    """What `PAGMixin._apply_perturbed_attention_guidance` reads of a pipeline."""

    def __init__(self, scale, adaptive):
        self._pag_scale, self._pag_adaptive_scale, self.pag_applied_layers = scale, adaptive, ["mid"]


@pytest.mark.parametrize(("guidance", "adaptive"), [(5.0, 0.0), (1.0, 0.0), (5.0, 0.004), (1.0, 0.004)])
def test_the_combine_is_the_pag_pipelines_bit_for_bit(guidance, adaptive):
    torch.manual_seed(0)
    cond, uncond, perturbed = torch.randn(3, 2, 4, 8, 8).unbind()
    t = torch.tensor(700)
    guider = _guider(guidance_scale=guidance, perturbed_guidance_scale=3.0, perturbed_guidance_adaptive_scale=adaptive)
    guider.set_state(step=1, num_inference_steps=4, timestep=t)
    cfg = guidance > 1
    stacked = torch.cat([uncond, cond, perturbed] if cfg else [cond, perturbed])
    expected = _Mixin(3.0, adaptive)._apply_perturbed_attention_guidance(stacked, cfg, guidance, t)
    got = guider(
        [
            BlockState(noise_pred=p, **{guider._identifier_key: name})
            for p, name in [(cond, "pred_cond"), (uncond, "pred_uncond"), (perturbed, "pred_cond_skip")]
            if cfg or name != "pred_uncond"
        ]
    ).pred
    assert torch.equal(got, expected)


def test_the_perturbed_batch_attends_as_the_pag_processor_perturbs():
    """Per batch (the hook) and merged (the pipelines' own processors), against `PAGIdentitySelfAttnProcessor2_0`
    on `[x, x]`, whose second half is perturbed; and the denoiser is left as it was."""
    denoiser = _Denoiser()
    x = torch.randn(2, 5, 8)
    mid = denoiser.mid["attn1"]
    expected_mid = mid.processor
    with torch.no_grad():
        normal = denoiser(x)
        reference = PAGIdentitySelfAttnProcessor2_0()
        perturbed = reference(mid, torch.cat([denoiser.down["attn1"](x)] * 2))[2:]
        guider = _guider(guidance_scale=5.0, perturbed_guidance_scale=3.0, perturbed_layers="mid")
        outputs = []
        for _ in range(3):  # conditional, unconditional, perturbed
            guider.prepare_models(denoiser)
            outputs.append(denoiser(x))
            guider.cleanup_models(denoiser)
        assert torch.equal(outputs[0], normal) and torch.equal(outputs[1], normal)
        assert torch.equal(outputs[2], perturbed) and not torch.equal(perturbed, normal)
        assert torch.equal(denoiser(x), normal)

        guider.set_state(step=1, num_inference_steps=4, timestep=torch.tensor(800))
        guider.prepare_merged_call(["pred_uncond", "pred_cond", "pred_cond_skip"])
        guider.prepare_models(denoiser)
        assert isinstance(mid.processor, PAGCFGIdentitySelfAttnProcessor2_0)
        merged = denoiser(torch.cat([x, x, x]))
        guider.cleanup_models(denoiser)
        assert mid.processor is expected_mid
        assert torch.equal(merged[4:], perturbed) and torch.equal(merged[:2], normal)
    with pytest.raises(ValueError, match="last"):
        guider.prepare_merged_call(["pred_cond_skip", "pred_cond"])


def test_named_pag_processors_run_each_batch_through_the_pipelines_processor():
    """A guider naming the pipeline's PAG processors runs every batch of a PAG layer through the one without CFG,
    on the batch twice, keeping its share: the first for the normal batches, the second for the perturbed one."""
    denoiser = _Denoiser()
    x = torch.randn(2, 5, 8)
    mid = denoiser.mid["attn1"]
    names = ["PAGCFGIdentitySelfAttnProcessor2_0", "PAGIdentitySelfAttnProcessor2_0"]
    with torch.no_grad():
        into_mid = denoiser.down["attn1"](x)
        both = PAGIdentitySelfAttnProcessor2_0()(mid, torch.cat([into_mid, into_mid]))
        guider = _guider(guidance_scale=5.0, perturbed_guidance_scale=3.0, perturbed_attention_processors=names)
        outputs = []
        for _ in range(3):
            guider.prepare_models(denoiser)
            outputs.append(denoiser(x))
            guider.cleanup_models(denoiser)
    assert torch.equal(outputs[0], both[:2]) and torch.equal(outputs[1], both[:2])
    assert torch.equal(outputs[2], both[2:]) and not torch.equal(both[2:], both[:2])
    assert isinstance(mid.processor, AttnProcessor2_0)
