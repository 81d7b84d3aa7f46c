"""Each guidance detector, pair propagation and the guidance transform on small before/after snippets.

A snippet is the body of a `__call__` (and, where it matters, extra methods) in a tiny pipeline class; the tests
assert what the detector found: the nodes, names, pairs and orders, or the refusal and where it points.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

import libcst as cst
import pytest

from modularize.analysis.guidance import branched, separate_passes
from modularize.analysis.guidance.batched import (
    CfgPattern,
    _chunk,
    _combine,
    condition_text,
    find_batched_cfg,
)
from modularize.analysis.guidance.branched import find_branched_cfg
from modularize.analysis.guidance.doubled_batch import cat_elements, doubles, halved_batch
from modularize.analysis.guidance.pairing import propagate_pairs
from modularize.analysis.guidance.separate_passes import find_separate_cfg
from modularize.analysis.rewrite_context import call_body
from modularize.analysis.runtime_plumbing import find_runtime_plumbing
from modularize.analysis.segment import find_timestep_loop, segment_call
from modularize.cst.node_index import NodeIndex
from modularize.cst.substitute import rewrite_statements
from modularize.errors import ConversionError
from modularize.frontend.class_facts import analyze_class
from modularize.frontend.parse import SourceModule, code, find_pipeline_class, parse_source
from modularize.normalize.image_encode import NotSplit, split_image_encode
from modularize.planning.plan import GuidanceField
from modularize.transforms.guidance import guider_denoise, unbatching_replacements

PIPELINE = """\
import torch
from diffusers import DiffusionPipeline


class SnippetPipeline(DiffusionPipeline):
    def __init__(self, unet, scheduler, transformer, transformer_2):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, transformer=transformer, transformer_2=transformer_2)

    @property
    def guidance_scale(self):
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self):
        return self._guidance_scale > 1
{methods}
    def __call__(
        self,
        prompt_embeds,
        negative_prompt_embeds,
        latents,
        timesteps,
        guidance_scale=5.0,
        guidance_scale_2=3.0,
        guidance_rescale=0.0,
        boundary=500,
    ):
        self._guidance_scale = guidance_scale
{body}
        return Output(images=latents)
"""


@dataclass
class Snippet:
    source: SourceModule
    facts: object
    body: list[cst.BaseStatement]
    loop_statement: cst.BaseStatement
    loop: cst.For
    dropped: set[int]

    def batched(self) -> CfgPattern | None:
        index = NodeIndex(self.body)
        return find_batched_cfg(
            self.source, self.facts, self.body, self.loop_statement, self.loop, self.dropped, index
        )

    def separate(self) -> CfgPattern | None:
        return find_separate_cfg(self.source, self.facts, self.body, self.loop, self.dropped)

    def branched(self) -> CfgPattern | None:
        return find_branched_cfg(self.source, self.facts, self.body, self.loop, self.dropped)

    def line_of(self, node: cst.CSTNode) -> int:
        return self.source.location(node).line

    def line(self, fragment: str, occurrence: int = 1) -> int:
        """The line of the source holding `fragment` (its `occurrence`-th one)."""
        lines = [n for n, text in enumerate(self.source.text.splitlines(), 1) if fragment in text]
        return lines[occurrence - 1]


def snippet(body: str, methods: str = "") -> Snippet:
    """A tiny pipeline whose `__call__` runs `body` (dedented; indented into the method)."""
    indented = textwrap.indent(textwrap.dedent(body), " " * 8)
    extra = textwrap.indent(textwrap.dedent(methods), " " * 4) if methods else ""
    text = PIPELINE.format(body=indented.rstrip("\n"), methods="\n" + extra if extra else "")
    source = parse_source(text, "snippet.py")
    facts = analyze_class(source, find_pipeline_class(source))
    statements = call_body(facts)
    segments = segment_call(source, statements)
    denoise = next(s for s in segments if s.kind == "denoise")
    drops, _ = find_runtime_plumbing(statements)
    return Snippet(
        source, facts, statements, denoise.loop, find_timestep_loop(denoise.loop), {id(d.node) for d in drops}
    )


def texts(nodes) -> list[str]:
    return [code(node).strip() for node in nodes]


def lines(node: cst.CSTNode) -> str:
    """The node's code without trailing whitespace (LibCST indents the blank lines of a block)."""
    return "\n".join(line.rstrip() for line in code(node).strip().splitlines())


def rendered(statements) -> str:
    return cst.Module(body=list(statements)).code


def fields(pattern: CfgPattern) -> list[tuple[str, str, str]]:
    return [(f.name, f.cond, f.uncond) for f in pattern.fields]


SD_LOOP = """\
if self.do_classifier_free_guidance:
    prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
for i, t in enumerate(timesteps):
    latent_model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
    latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
    noise_pred = self.unet(latent_model_input, t, encoder_hidden_states=prompt_embeds)[0]
    if self.do_classifier_free_guidance:
        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
        noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)
    if self.do_classifier_free_guidance and guidance_rescale > 0.0:
        noise_pred = rescale_noise_cfg(noise_pred, noise_pred_text, guidance_rescale=guidance_rescale)
    latents = self.scheduler.step(noise_pred, t, latents)[0]
"""


# -- batched CFG ---------------------------------------------------------------------------------------------------
def test_batched_cfg_finds_every_piece_of_the_standard_shape():
    found = snippet(SD_LOOP)
    cfg = found.batched()

    assert cfg.kind == "batched"
    assert (cfg.condition_name, code(cfg.condition_expression)) == (
        "do_classifier_free_guidance",
        "self._guidance_scale > 1",
    )
    assert cfg.condition_statement is None  # a property, not a local
    assert (cfg.denoiser, cfg.model_output, cfg.guided) == ("unet", "noise_pred", "noise_pred")
    assert code(cfg.scale) == "self.guidance_scale" and code(cfg.rescale) == "guidance_rescale"
    assert code(cfg.rescale_test) == "self.do_classifier_free_guidance and guidance_rescale > 0.0"
    # `[negative, positive]`: the first chunk is the unconditional one
    assert cfg.batch_order == ("pred_uncond", "pred_cond")
    assert [(s.target, s.cond, s.uncond) for s in cfg.cat_sites] == [
        ("prompt_embeds", "prompt_embeds", "negative_prompt_embeds")
    ]
    # the whole `if` (it only concatenates)
    assert found.line_of(cfg.cat_sites[0].node) == found.line("if self.do_classifier_free_guidance:")
    assert texts(cfg.expansions) == ["torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents"]
    assert cfg.repeated == ("latent_model_input",)
    assert fields(cfg) == [("prompt_embeds", "prompt_embeds", "negative_prompt_embeds")]
    assert [found.line_of(s) for s in cfg.guidance_statements] == [  # the combine `if`, the rescale `if`
        found.line("    if self.do_classifier_free_guidance:", 2),
        found.line("if self.do_classifier_free_guidance and guidance_rescale"),
    ]
    assert texts([cfg.call_statement]) == [
        "noise_pred = self.unet(latent_model_input, t, encoder_hidden_states=prompt_embeds)[0]"
    ]


def test_a_branch_run_in_the_guider_cannot_leave_the_loop():
    """Found by the fuzz (a `continue` inserted in Kandinsky 2.2 ControlNet's CFG branch): the copy in the guider's
    `forward` would not compile, so the `continue` is refused where it is."""
    old = "        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)\n"
    new = (
        "        continue\n"
        "        noise_pred, variance = noise_pred.split(latents.shape[1], dim=1)\n"
        "        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)\n"
    )
    assert old in SD_LOOP
    found = snippet(SD_LOOP.replace(old, new))
    with pytest.raises(ConversionError, match="where it cannot leave the denoising loop") as error:
        found.batched()
    assert error.value.location.line == found.line("        continue")


@pytest.mark.parametrize(
    ("doubling", "site"),
    [
        # moved to a dtype after the concatenation: each half is moved instead, still under the flag
        (
            "    prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds]).to(dtype=torch.float16)\n",
            ("prompt_embeds", "prompt_embeds", "negative_prompt_embeds", 1),
        ),
        # the batch repeated with `.repeat(2, 1, 1)`: one value both conditions share
        (
            "    prompt_embeds = prompt_embeds.repeat(2, 1, 1)\n",
            ("prompt_embeds", "prompt_embeds", "prompt_embeds", 0),
        ),
    ],
    ids=["cat-then-to", "repeat-batch"],
)
def test_other_spellings_of_a_cfg_concatenation_are_sites_too(doubling, site):
    cat = "    prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])\n"
    assert cat in SD_LOOP
    cfg = snippet(SD_LOOP.replace(cat, doubling)).batched()
    (found,) = cfg.cat_sites
    assert (found.target, found.cond, found.uncond, len(found.applied)) == site
    replaced = unbatching_replacements(cfg)[found.node]
    statements = replaced.nodes if isinstance(replaced, cst.FlattenSentinel) else [replaced]
    if found.applied:
        assert [code(s).strip() for s in statements] == [
            "prompt_embeds = prompt_embeds.to(dtype=torch.float16)",
            "negative_prompt_embeds = negative_prompt_embeds.to(dtype=torch.float16)",
        ]


def test_a_branch_doing_more_than_chunk_and_combine_runs_whole_in_a_guider_on_the_two_predictions():
    """A learned variance split off first and put back (DeepFloyd IF, Kandinsky): the branch is the combine, bound
    to the guider's predictions concatenated in the source's order; what else it reads is set on the guider."""
    old = (
        "        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)\n"
        "        noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)\n"
    )
    new = (
        "        noise_pred, variance = noise_pred.split(latents.shape[1], dim=1)\n"
        "        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)\n"
        "        _, variance_text = variance.chunk(2)\n"
        "        noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)\n"
        "        noise_pred = torch.cat([noise_pred, variance_text], dim=1)\n"
    )
    rescale = (
        "    if self.do_classifier_free_guidance and guidance_rescale > 0.0:\n"
        "        noise_pred = rescale_noise_cfg(noise_pred, noise_pred_text, guidance_rescale=guidance_rescale)\n"
    )
    assert rescale in SD_LOOP and old in SD_LOOP
    body = SD_LOOP.replace(old, new).replace(rescale, "")
    cfg = snippet(body).batched()
    assert cfg.combine is not None and cfg.combine.result == "noise_pred"
    assert cfg.combine.bindings[0] == ("noise_pred", "torch.cat([pred_uncond, pred_cond])")
    assert cfg.combine.inputs == (("latents", "latents"),)
    assert cfg.batch_order == ("pred_uncond", "pred_cond") and cfg.rescale is None


def test_positive_first_concatenation_and_chunks_give_the_cond_first_order():
    cfg = snippet(
        SD_LOOP.replace("[negative_prompt_embeds, prompt_embeds]", "[prompt_embeds, negative_prompt_embeds]").replace(
            "noise_pred_uncond, noise_pred_text = ", "noise_pred_text, noise_pred_uncond = "
        )
    ).batched()
    assert cfg.batch_order == ("pred_cond", "pred_uncond")
    assert [(s.cond, s.uncond) for s in cfg.cat_sites] == [("prompt_embeds", "negative_prompt_embeds")]


def test_a_concatenation_against_the_chunk_order_is_refused_at_the_concatenation():
    found = snippet(
        SD_LOOP.replace("[negative_prompt_embeds, prompt_embeds]", "[prompt_embeds, negative_prompt_embeds]")
    )
    with pytest.raises(ConversionError, match="opposite order to the prediction's chunks") as error:
        found.batched()
    assert error.value.location.line == found.line("torch.cat([prompt_embeds, negative_prompt_embeds])")


def test_a_cfg_flag_held_in_a_local_is_the_condition_and_its_assignment_is_reported():
    body = "do_cfg = guidance_scale > 1.0\n" + SD_LOOP.replace("self.do_classifier_free_guidance", "do_cfg")
    cfg = snippet(body).batched()
    assert cfg.condition_name == "do_cfg"
    assert code(cfg.condition_expression) == "guidance_scale > 1.0"
    assert texts([cfg.condition_statement]) == ["do_cfg = guidance_scale > 1.0"]


def test_statements_between_the_call_and_the_chunk_run_per_batch():
    body = SD_LOOP.replace(
        "encoder_hidden_states=prompt_embeds)[0]\n",
        "encoder_hidden_states=prompt_embeds)[0]\n    noise_pred = noise_pred.float()\n",
    )
    assert texts(snippet(body).batched().between) == ["noise_pred = noise_pred.float()"]


def test_a_loop_without_cfg_has_no_pattern():
    body = """\
    for i, t in enumerate(timesteps):
        noise_pred = self.unet(latents, t, encoder_hidden_states=prompt_embeds)[0]
        latents = self.scheduler.step(noise_pred, t, latents)[0]
    """
    found = snippet(body)
    assert found.batched() is None and found.separate() is None and found.branched() is None


@pytest.mark.parametrize(
    ("old", "new", "message", "at"),
    [
        # a combine no matcher knows, where no concatenation says which half is the conditional one
        (
            "        noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)\n",
            "        noise_pred = noise_pred_uncond * self.guidance_scale\n",
            "which half of the prediction is unconditional cannot be told",
            ("if self.do_classifier_free_guidance:", 2),
        ),
        # no chunk under a CFG branch: the loop's first guidance evidence (the doubled latents) is refused
        (
            "    if self.do_classifier_free_guidance:\n        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)\n",
            "    noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)\n    if self.do_classifier_free_guidance:\n",
            "guidance this converter does not recognize",
            ("torch.cat([latents] * 2)", 1),
        ),
        # a half of the prediction read after the combine (the rescale's read is part of the guidance): the guider
        # hands on only the combined prediction, so the read is refused where it is
        (
            "    latents = self.scheduler.step(noise_pred, t, latents)[0]\n",
            "    latents = self.scheduler.step(noise_pred, t, latents)[0]\n"
            "    latents = self.scheduler.add_noise(latents, noise_pred_uncond, t)\n",
            "`noise_pred_uncond`, computed with the CFG-split prediction, is read after the guidance combine",
            ("noise_pred_uncond, t)", 1),
        ),
        # a CFG concatenation inside a compound statement cannot be undone per guider batch
        (
            "    prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])\n",
            "    for k in range(1):\n        prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])\n",
            "a concatenation for CFG inside a compound statement",
            ("torch.cat([negative_prompt_embeds", 1),
        ),
        # a value built one way with CFG and another way without it
        (
            "    prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])\n",
            "    prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])\n"
            "    scale_ids = torch.tensor([1, 1])\nelse:\n    scale_ids = torch.tensor([1])\n",
            "`scale_ids` is computed one way under the CFG flag and another way without it",
            ("if self.do_classifier_free_guidance:", 1),
        ),
    ],
    ids=["unknown-combine", "unguarded-split", "half-read-after-combine", "cat-in-a-loop", "cfg-alternatives"],
)
def test_guidance_the_detector_does_not_understand_is_refused_where_it_is(old, new, message, at):
    assert old in SD_LOOP
    body = SD_LOOP.replace(old, new)
    if message.startswith("which half"):  # the embeddings concatenated into a new name say nothing of the order
        body = body.replace("prompt_embeds = torch.cat(", "embeds = torch.cat(").replace(
            "encoder_hidden_states=prompt_embeds", "encoder_hidden_states=embeds"
        )
    found = snippet(body)
    with pytest.raises(ConversionError, match=message) as error:
        found.batched()
    assert error.value.location.line == found.line(*at)


def test_a_combine_no_matcher_knows_runs_verbatim_its_halves_told_apart_by_the_data_flow():
    # `prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])`: the value CFG off uses comes second,
    # so the chunk's second half is the conditional prediction, whatever the halves are called
    old = "        noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)\n"
    assert old in SD_LOOP
    rescale = (
        "    if self.do_classifier_free_guidance and guidance_rescale > 0.0:\n"
        "        noise_pred = rescale_noise_cfg(noise_pred, noise_pred_text, guidance_rescale=guidance_rescale)\n"
    )
    lerp = "        noise_pred = torch.lerp(noise_pred_uncond, noise_pred_text, self.guidance_scale)\n"
    body = SD_LOOP.replace(old, lerp).replace(rescale, "")
    cfg = snippet(body).batched()
    assert (
        texts(cfg.combine.statements)[-1]
        == "noise_pred = torch.lerp(noise_pred_uncond, noise_pred_text, self.guidance_scale)"
    )
    assert ("noise_pred", "torch.cat([pred_uncond, pred_cond])") in cfg.combine.bindings
    assert code(cfg.scale) == "self.guidance_scale"
    # the concatenation the other way round: the first half is the conditional one
    swapped = body.replace("[negative_prompt_embeds, prompt_embeds]", "[prompt_embeds, negative_prompt_embeds]")
    assert ("noise_pred", "torch.cat([pred_cond, pred_uncond])") in snippet(swapped).batched().combine.bindings


def test_the_batch_split_in_two_in_its_spellings():
    for text in ("x.chunk(2)", "x.chunk(2, dim=0)", "x.chunk(2, 0)", "torch.chunk(x, 2)", "torch.chunk(x, 2, dim=0)"):
        assert halved_batch(cst.parse_expression(text)) == "x", text
    for text in ("x.chunk(2, dim=1)", "x.chunk(3)", "torch.chunk(x, 2, 1)", "x.split(2)"):
        assert halved_batch(cst.parse_expression(text)) is None, text


@pytest.mark.parametrize(
    ("on", "off", "expected"),
    [
        ("(t / n).view(1).repeat(2).to(device)", "(t / n).view(1).to(device)", True),
        ("x.repeat(2, 1, 1)", "x", True),
        ("torch.full((rows * 2,), t.item(), device=d)", "torch.full((rows,), t.item(), device=d)", True),
        ("torch.zeros((2 * rows, 4))", "torch.zeros((rows, 4))", True),
        ("x.repeat(2).sum()", "x.sum()", False),  # a reduction over the doubled batch is not the value twice
        ("torch.full((rows * 2,), 1.0)", "torch.full((rows,), 2.0)", False),
        ("torch.full((rows * 3,), 1.0)", "torch.full((rows,), 1.0)", False),
        ("torch.randn((rows * 2,))", "torch.randn((rows,))", False),  # two draws are not one draw twice
    ],
)
def test_a_value_doubled_for_the_cfg_batch_by_what_it_computes(on, off, expected):
    assert doubles(cst.parse_expression(on), cst.parse_expression(off)) is expected


def test_a_helper_that_only_repeats_for_cfg_is_called_without_the_flag_one_that_pairs_under_a_guard_is_gated():
    """Unguarded, a pairing helper's results are split where they are received (`test_a_helper_returning_a_doubled_batch_is_split_where_call_receives_it`); under a guard
    the input it guards on would have to come doubled, so that input is gated."""
    methods = """\
    def prepare_mask(self, mask, do_classifier_free_guidance):
        mask = torch.cat([mask] * 2) if do_classifier_free_guidance else mask
        return mask

    def prepare_image_embeds(self, embeds, negative_embeds, do_classifier_free_guidance):
        if do_classifier_free_guidance:
            embeds = torch.cat([negative_embeds, embeds])
        return embeds
    """
    body = (
        "mask = self.prepare_mask(latents, self.do_classifier_free_guidance)\n"
        "if latents is not None:\n"
        "    image_embeds = self.prepare_image_embeds(latents, latents, self.do_classifier_free_guidance)\n"
        + SD_LOOP.replace("encoder_hidden_states=prompt_embeds)", "encoder_hidden_states=prompt_embeds, mask=mask)")
    )
    cfg = snippet(body, methods).batched()
    (rewrite,) = [(code(old), code(new)) for old, new in cfg.rewrites]
    assert rewrite == ("self.do_classifier_free_guidance", "False")
    assert [use.helper for use in cfg.pairing_helpers] == ["prepare_image_embeds"]
    assert cfg.pairing_helpers[0].pairs


def test_what_a_repeat_only_helper_makes_for_the_denoiser_is_a_value_both_batches_share():
    """Its flag is turned off, so each guider batch (and a merged call, concatenated) gets the single value; found
    also when the call sits inside a compound statement."""
    methods = """\
    def prepare_control(self, image, do_classifier_free_guidance):
        return torch.cat([image] * 2) if do_classifier_free_guidance else image
    """
    body = (
        "if latents is not None:\n"
        "    control = self.prepare_control(latents, self.do_classifier_free_guidance)\n"
        + SD_LOOP.replace("encoder_hidden_states=prompt_embeds)", "encoder_hidden_states=prompt_embeds, cond=control)")
    )
    cfg = snippet(body, methods).batched()
    assert GuidanceField("control", "control", "control") in cfg.fields
    assert [(code(old), code(new)) for old, new in cfg.rewrites] == [("self.do_classifier_free_guidance", "False")]


def test_a_helper_handed_the_flag_as_the_test_it_stands_for_is_recognized_too():
    """`do_cfg=self._guidance_scale > 1` and `do_cfg=guidance_scale > 1` (the argument the state is set from) pass
    the same flag as `self.do_classifier_free_guidance` does."""
    methods = """\
    def prepare_rays(self, rays, do_cfg):
        if do_cfg:
            rays = torch.cat([rays, rays], dim=0)
        return rays
    """
    for flag in ("guidance_scale > 1", "self._guidance_scale > 1"):
        body = f"rays = self.prepare_rays(latents, do_cfg={flag})\n" + SD_LOOP.replace(
            "encoder_hidden_states=prompt_embeds)", "encoder_hidden_states=prompt_embeds, rays=rays)"
        )
        cfg = snippet(body, methods).batched()
        (rewrite,) = [(code(old), code(new)) for old, new in cfg.rewrites]
        assert rewrite == (flag, "False")


def test_a_helper_concatenating_under_the_cfg_property_itself_is_refused_at_its_call():
    methods = """\
    def encode_image(self, image):
        embeds = image * 2
        if self.do_classifier_free_guidance:
            embeds = torch.cat([torch.zeros_like(embeds), embeds])
        return embeds
    """
    body = "image_embeds = self.encode_image(latents)\n" + SD_LOOP.replace(
        "encoder_hidden_states=prompt_embeds)", "encoder_hidden_states=prompt_embeds, image_embeds=image_embeds)"
    )
    found = snippet(body, methods)
    with pytest.raises(ConversionError, match="`encode_image` concatenates for CFG inside itself") as error:
        found.batched()
    assert error.value.location.line == found.line("self.encode_image(latents)")


def test_combine_and_concatenation_matchers():
    statement = cst.parse_statement("noise_pred = u + scale * (c - u)\n")
    guided, uncond, cond, scale = _combine(statement)
    assert (guided, uncond, cond, code(scale)) == ("noise_pred", "u", "c", "scale")
    assert _combine(cst.parse_statement("noise_pred = c + scale * (c - u)\n")) is None  # not `u + s * (c - u)`
    assert _chunk(cst.parse_statement("a, b = pred.chunk(2)\n")) == ("pred", "a", "b")
    assert _chunk(cst.parse_statement("a, b, c = pred.chunk(3)\n")) is None
    assert texts(cat_elements(cst.parse_expression("torch.cat([x] * 2)"))) == ["x", "x"]
    assert texts(cat_elements(cst.parse_expression("torch.cat([a, b], dim=0)"))) == ["a", "b"]
    assert cat_elements(cst.parse_expression("torch.cat([a, b], dim=1)")) is None  # not along the batch


def test_the_cfg_condition_reads_call_arguments_on_one_line():
    expression = cst.parse_expression("(\n    self._guidance_scale > 1\n    and self.transformer.config.x is None\n)")
    assert condition_text(expression, {"_guidance_scale": "guidance_scale"}) == (
        "guidance_scale > 1 and self.transformer.config.x is None"
    )


# -- separate passes -----------------------------------------------------------------------------------------------
TRUE_CFG = """\
do_true_cfg = guidance_scale > 1 and negative_prompt_embeds is not None
for i, t in enumerate(timesteps):
    with self.transformer.cache_context("cond"):
        noise_pred = self.transformer(hidden_states=latents, timestep=t, encoder_hidden_states=prompt_embeds)[0]
    if do_true_cfg:
        with self.transformer.cache_context("uncond"):
            neg_noise_pred = self.transformer(
                hidden_states=latents, timestep=t, encoder_hidden_states=negative_prompt_embeds
            )[0]
        noise_pred = neg_noise_pred + guidance_scale * (noise_pred - neg_noise_pred)
    latents = self.scheduler.step(noise_pred, t, latents)[0]
"""


def test_separate_passes_pair_what_differs_between_the_two_calls_and_keep_their_cache_contexts():
    found = snippet(TRUE_CFG)
    cfg = found.separate()
    assert cfg.kind == "separate" and cfg.formulation == "diffusers" and cfg.combine is None
    assert (cfg.condition_name, texts([cfg.condition_statement])) == (
        "do_true_cfg",
        ["do_true_cfg = guidance_scale > 1 and negative_prompt_embeds is not None"],
    )
    assert fields(cfg) == [("prompt_embeds", "prompt_embeds", "negative_prompt_embeds")]  # latents, t: shared
    assert cfg.cache_contexts == (("pred_cond", "cond"), ("pred_uncond", "uncond"))
    assert cfg.batch_order == ("pred_cond", "pred_uncond")
    assert (cfg.denoiser, cfg.denoiser_local, cfg.model_output, code(cfg.scale)) == (
        "transformer",
        None,
        "noise_pred",
        "guidance_scale",
    )
    assert found.line_of(cfg.call_statement) == found.line('with self.transformer.cache_context("cond")')
    assert found.line_of(cfg.guidance_statements[0]) == found.line("if do_true_cfg:")  # the unconditional pass


def test_cond_plus_scale_times_difference_is_the_original_formulation():
    cfg = snippet(TRUE_CFG.replace("= neg_noise_pred + guidance_scale", "= noise_pred + guidance_scale")).separate()
    assert cfg.formulation == "original" and cfg.combine is None


def test_more_than_the_formula_becomes_a_custom_combine_bound_to_the_guiders_predictions():
    body = TRUE_CFG.replace(
        "        noise_pred = neg_noise_pred + guidance_scale * (noise_pred - neg_noise_pred)\n",
        "        comb_pred = neg_noise_pred + guidance_scale * (noise_pred - neg_noise_pred)\n"
        "        noise_pred = comb_pred * (torch.norm(noise_pred) / torch.norm(comb_pred))\n",
    )
    combine = snippet(body).separate().combine
    assert combine.bindings == (
        ("noise_pred", "pred_cond"),
        ("neg_noise_pred", "pred_uncond"),
        ("guidance_scale", "self.guidance_scale"),
    )
    assert texts(combine.statements) == [
        "comb_pred = neg_noise_pred + guidance_scale * (noise_pred - neg_noise_pred)",
        "noise_pred = comb_pred * (torch.norm(noise_pred) / torch.norm(comb_pred))",
    ]
    assert combine.result == "noise_pred"


def test_a_model_and_scale_picked_per_step_are_followed_through_their_locals():
    body = """\
    for i, t in enumerate(timesteps):
        if t >= boundary:
            current_model = self.transformer
            current_guidance_scale = guidance_scale
        else:
            current_model = self.transformer_2
            current_guidance_scale = guidance_scale_2
        noise_pred = current_model(hidden_states=latents, encoder_hidden_states=prompt_embeds)[0]
        if self.do_classifier_free_guidance:
            noise_uncond = current_model(hidden_states=latents, encoder_hidden_states=negative_prompt_embeds)[0]
            noise_pred = noise_uncond + current_guidance_scale * (noise_pred - noise_uncond)
        latents = self.scheduler.step(noise_pred, t, latents)[0]
    """
    cfg = snippet(body).separate()
    assert (cfg.denoiser, cfg.denoiser_local, cfg.denoisers) == (
        "transformer",
        "current_model",
        ("transformer", "transformer_2"),
    )
    assert cfg.step_scales == ("guidance_scale", "guidance_scale_2")
    assert cfg.condition_name == "do_classifier_free_guidance"


def test_the_same_statement_after_each_pass_runs_per_batch():
    body = TRUE_CFG.replace(
        "    if do_true_cfg:\n",
        "    noise_pred = noise_pred[:, :4]\n    if do_true_cfg:\n",
    ).replace(
        "            )[0]\n",
        "            )[0]\n        neg_noise_pred = neg_noise_pred[:, :4]\n",
    )
    assert texts(snippet(body).separate().batch_after) == ["noise_pred = noise_pred[:, :4]"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "encoder_hidden_states=negative_prompt_embeds",
            "encoder_hidden_states=negative_prompt_embeds * 2",
            "not the same expression of variables a guider can pair",
        ),
        (
            'with self.transformer.cache_context("uncond"):\n            neg_noise_pred = self.transformer(',
            'with self.transformer_2.cache_context("uncond"):\n            neg_noise_pred = self.transformer_2(',
            "calls another model than the conditional one",
        ),
        (
            'with self.transformer.cache_context("uncond"):\n'
            "            neg_noise_pred = self.transformer(\n"
            "                hidden_states=latents, timestep=t, encoder_hidden_states=negative_prompt_embeds\n"
            "            )[0]\n",
            "neg_noise_pred = self.transformer(\n"
            "                hidden_states=latents, timestep=t, encoder_hidden_states=negative_prompt_embeds\n"
            "            )[0]\n",
            "only one of the two passes",
        ),
    ],
    ids=["unpairable-argument", "other-model", "one-cache-context"],
)
def test_separate_passes_the_detector_cannot_pair_are_refused(old, new, message):
    assert old in TRUE_CFG
    with pytest.raises(ConversionError, match=message):
        snippet(TRUE_CFG.replace(old, new)).separate()


ELSE_AFTER_THE_PASS = (
    "        noise_pred = neg_noise_pred + guidance_scale * (noise_pred - neg_noise_pred)\n    else:\n"
)


@pytest.mark.parametrize(
    ("orelse", "inert"),
    [
        ("        noise_pred = noise_pred\n        neg_noise_pred = None\n", True),  # a no-op, a dead assignment
        ("        noise_pred = noise_pred * 2\n", False),  # with CFG off the source changes the prediction
        ("        last_neg = None\n", True),
        ("        last_neg = None\n    keep = last_neg\n", False),  # ... read after the branch
    ],
    ids=["no-op-and-dead", "changes-the-prediction", "dead", "read-later"],
)
def test_an_else_after_the_unconditional_pass_is_dropped_only_when_nothing_reads_what_it_does(orelse, inert):
    text = TRUE_CFG.replace(ELSE_AFTER_THE_PASS.split("\n")[0] + "\n", ELSE_AFTER_THE_PASS + orelse)
    assert "else:" in text
    if inert:
        assert snippet(text).separate().kind == "separate"
    else:
        with pytest.raises(ConversionError, match="an `else` after the unconditional pass") as error:
            snippet(text).separate()
        assert error.value.location.line == snippet(text).line("else:")


def test_a_second_model_call_under_a_condition_that_is_no_flag_is_not_cfg():
    body = """\
    for i, t in enumerate(timesteps):
        noise_pred = self.transformer(hidden_states=latents)[0]
        if t < boundary:
            noise_pred = self.transformer_2(hidden_states=latents)[0]
        latents = self.scheduler.step(noise_pred, t, latents)[0]
    """
    assert snippet(body).separate() is None


def test_step_scales_are_the_call_arguments_a_loop_local_takes():
    found = snippet("for i, t in enumerate(timesteps):\n    pass\n")
    before = [
        cst.parse_statement("s = self.guidance_scale\n"),
        cst.parse_statement("if t > 3:\n    s = 0.0\n"),
    ]
    assert separate_passes.step_scales(found.facts, before, cst.Name("s")) == ("guidance_scale",)
    assert separate_passes.step_scales(found.facts, before, cst.Name("guidance_scale")) == ()  # an argument itself
    unknown = [cst.parse_statement("s = compute()\n")]
    assert separate_passes.step_scales(found.facts, unknown, cst.Name("s")) == ()


# -- branched CFG --------------------------------------------------------------------------------------------------
BRANCHED = """\
batch = latents.shape[0]
for i, t in enumerate(timesteps):
    timestep = t.expand(latents.shape[0])
    if self.do_classifier_free_guidance:
        model_input = torch.cat([latents] * 2)
        embeds_input = torch.cat([prompt_embeds, negative_prompt_embeds])
        timestep_input = timestep.repeat(2)
    else:
        model_input = latents
        embeds_input = prompt_embeds
        timestep_input = timestep
    model_input = model_input.to(self.transformer.dtype)
    model_out = self.transformer(model_input, embeds_input, timestep=timestep_input)[0]
    if self.do_classifier_free_guidance:
        pos = model_out[:batch]
        neg = model_out[batch:]
        noise_pred = pos + guidance_scale * (pos - neg)
    else:
        noise_pred = model_out
    latents = self.scheduler.step(noise_pred, t, latents)[0]
"""


def test_branched_cfg_runs_the_cfg_off_branch_per_batch_and_the_output_branch_in_a_guider():
    found = snippet(BRANCHED)
    cfg = found.branched()
    assert cfg.kind == "branched" and cfg.formulation == "original"
    assert cfg.condition_name == "do_classifier_free_guidance"
    # the `if` branch concatenates positive first: that is the order the merged call keeps
    assert cfg.batch_order == ("pred_cond", "pred_uncond")
    assert fields(cfg) == [("prompt_embeds", "prompt_embeds", "negative_prompt_embeds")]  # repeats are shared
    assert texts(cfg.batch_statements) == [
        "model_input = latents",
        "embeds_input = prompt_embeds",
        "timestep_input = timestep",
        "model_input = model_input.to(self.transformer.dtype)",
    ]
    assert code(cfg.model_call) == "self.transformer(model_input, embeds_input, timestep=timestep_input)"
    assert [found.line_of(s) for s in cfg.guidance_statements] == [  # the input `if`, the output `if`
        found.line("if self.do_classifier_free_guidance:", 1),
        found.line("if self.do_classifier_free_guidance:", 2),
    ]
    combine = cfg.combine
    assert combine.bindings == (
        ("pos", "pred_cond"),
        ("neg", "pred_uncond"),
        ("guidance_scale", "self.guidance_scale"),
    )
    assert texts(combine.statements) == ["noise_pred = pos + guidance_scale * (pos - neg)"]
    assert (texts(combine.off_statements), combine.off_bindings) == (
        ["noise_pred = model_out"],
        (("model_out", "pred_cond"),),
    )
    assert combine.result == cfg.guided == "noise_pred"


def test_negative_first_batches_and_halves_give_the_uncond_first_order():
    body = BRANCHED.replace("[prompt_embeds, negative_prompt_embeds]", "[negative_prompt_embeds, prompt_embeds]")
    body = body.replace("pos = model_out[:batch]", "neg = model_out[:batch]", 1).replace(
        "neg = model_out[batch:]", "pos = model_out[batch:]", 1
    )
    cfg = snippet(body).branched()
    assert cfg.batch_order == ("pred_uncond", "pred_cond")
    assert cfg.combine.bindings[:2] == (("pos", "pred_cond"), ("neg", "pred_uncond"))


def test_a_truncated_per_step_scale_and_extra_combine_inputs_are_set_on_the_guider():
    body = (
        BRANCHED.replace(
            "    if self.do_classifier_free_guidance:\n        model_input",
            "    current_guidance_scale = guidance_scale\n"
            "    if t < boundary:\n"
            "        current_guidance_scale = 0.0\n"
            "    apply_cfg = self.do_classifier_free_guidance and current_guidance_scale > 0\n"
            "    if apply_cfg:\n        model_input",
        )
        .replace("    if self.do_classifier_free_guidance:\n        pos", "    if apply_cfg:\n        pos")
        .replace(
            "noise_pred = pos + guidance_scale * (pos - neg)\n",
            "noise_pred = pos + current_guidance_scale * (pos - neg)\n        noise_pred = noise_pred / boundary\n",
        )
    )
    cfg = snippet(body).branched()
    assert code(cfg.condition) == "self.do_classifier_free_guidance"  # `and current_guidance_scale > 0` is per step
    assert cfg.step_scales == ("guidance_scale",)
    assert cfg.combine.inputs == (("boundary", "boundary"),)
    assert ("boundary", "self.boundary") in cfg.combine.bindings


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "embeds_input = torch.cat([prompt_embeds, negative_prompt_embeds])",
            "embeds_input = torch.cat([prompt_embeds, prompt_embeds * 0])",
            "cannot be split per guider batch",
        ),
        ("noise_pred = pos + guidance_scale * (pos - neg)", "noise_pred = pos - neg", "no `c + s * (c - u)`"),
    ],
    ids=["unpairable", "no-formula"],
)
def test_branched_cfg_the_detector_cannot_split_is_refused(old, new, message):
    assert old in BRANCHED
    with pytest.raises(ConversionError, match=re.escape(message)):
        snippet(BRANCHED.replace(old, new)).branched()


def test_an_output_branch_without_else_is_left_to_the_batched_detector():
    # `if cfg: u, c = out.chunk(2); out = ...` keeps the output as it is with CFG off: batched CFG written with
    # branches, not the branched shape (whose `else` says what CFG off computes)
    old = "    else:\n        noise_pred = model_out\n"
    assert old in BRANCHED
    assert snippet(BRANCHED.replace(old, "")).branched() is None


def test_branched_matchers():
    pair = branched._concatenated_pair(cst.parse_expression("torch.cat([a, b])"))
    assert texts(pair) == ["a", "b"]
    assert texts(branched._concatenated_pair(cst.parse_expression("a + b"))) == ["a", "b"]  # lists of samples
    plain = cst.parse_expression("x")
    assert branched._repeats(cst.parse_expression("x.repeat(2, 1, 1)"), plain)
    assert branched._repeats(cst.parse_expression("torch.cat([x] * 2)"), plain)
    assert not branched._repeats(cst.parse_expression("x.repeat(3)"), plain)
    assert branched._slice_of(cst.parse_statement("a = out[:n]\n"), "out") == ("a", "head")
    assert branched._slice_of(cst.parse_statement("b = out[n:]\n"), "out") == ("b", "tail")
    assert branched._slice_of(cst.parse_statement("b = out[1:n]\n"), "out") is None
    scale, formulation = branched._formula([cst.parse_statement("g = u + s * (c - u)\n")], "c", "u")
    assert (code(scale), formulation) == ("s", "diffusers")


# -- pair propagation ----------------------------------------------------------------------------------------------
def propagation(text: str, pairs: dict[str, str], taken=()):
    """`text`: statements, the model call last (the `stop`)."""
    source = parse_source("def f():\n" + textwrap.indent(textwrap.dedent(text), "    "), "snippet.py")
    statements = list(source.tree.body[0].body.body)
    condition = cst.parse_expression("self.do_classifier_free_guidance")
    taken = set(pairs) | set(pairs.values()) | set(taken)
    return source, statements, propagate_pairs(source, "P", pairs, statements, statements[-1], set(), taken, condition)


def test_per_sample_operations_on_a_paired_tensor_are_mirrored_onto_its_counterpart():
    _, statements, pairing = propagation(
        """\
        embeds = prompt_embeds.to(device)
        added = {"text_embeds": embeds, "scale": 2}
        noise_pred = self.unet(latents, encoder_hidden_states=embeds, added_cond_kwargs=added)
        """,
        {"prompt_embeds": "negative_prompt_embeds"},
    )
    assert pairing.pairs == {
        "prompt_embeds": "negative_prompt_embeds",
        "embeds": "negative_embeds",
        "added": "negative_added",
    }
    assert [original for original, _ in pairing.mirrored] == statements[:2]
    assert rendered(pairing.mirrored[1][1].nodes) == (
        'added = {"text_embeds": embeds, "scale": 2}\n'
        "if self.do_classifier_free_guidance:\n"
        '    negative_added = {"text_embeds": negative_embeds, "scale": 2}\n'
    )


def test_a_conditional_expression_whose_test_does_not_read_the_batch_is_mirrored_side_by_side():
    _, _, pairing = propagation(
        """\
        added = {"image_embeds": prompt_embeds} if latents is not None else None
        noise_pred = self.unet(latents, added_cond_kwargs=added)
        """,
        {"prompt_embeds": "negative_prompt_embeds"},
    )
    assert pairing.pairs["added"] == "negative_added"
    assert rendered(pairing.mirrored[0][1].nodes).splitlines()[-1] == (
        '    negative_added = {"image_embeds": negative_prompt_embeds} if latents is not None else None'
    )
    with pytest.raises(ConversionError, match="read with its CFG-doubled batch"):
        propagation(
            """\
            added = prompt_embeds if prompt_embeds.shape[0] > 1 else None
            noise_pred = self.unet(latents, added_cond_kwargs=added)
            """,
            {"prompt_embeds": "negative_prompt_embeds"},
        )


def test_an_if_whose_sides_assign_per_sample_values_is_mirrored_side_by_side_before_it():
    """SD3 ControlNet's pooled projections: zeros of the embeddings' shape, or a given value else the embeddings;
    the mirror reads `given` as it was before the `if` reassigns it."""
    _, statements, pairing = propagation(
        """\
        if latents is None:
            given = torch.zeros_like(prompt_embeds)
        else:
            given = given or prompt_embeds
        noise_pred = self.unet(latents, pooled=given)
        """,
        {"prompt_embeds": "negative_prompt_embeds"},
    )
    assert pairing.pairs["given"] == "negative_given"
    ((original, mirror),) = pairing.mirrored
    assert original is statements[0]
    assert rendered(mirror.nodes) == (
        "if self.do_classifier_free_guidance:\n"
        "    if latents is None:\n"
        "        negative_given = torch.zeros_like(negative_prompt_embeds)\n"
        "    else:\n"
        "        negative_given = given or negative_prompt_embeds\n" + code(statements[0])
    )


def test_a_repeat_of_a_paired_tensor_is_guarded_by_a_check_that_both_halves_are_equal():
    _, _, pairing = propagation(
        "ids = time_ids.repeat(batch_size, 1)\nnoise_pred = self.unet(latents, time_ids=ids)\n",
        {"time_ids": "negative_time_ids"},
    )
    guard, original, mirror = pairing.mirrored[0][1].nodes
    assert code(guard).startswith(
        "if self.do_classifier_free_guidance:\n"
        "    if batch_size > 1 and not torch.equal(negative_time_ids, time_ids):\n"
        "        raise ValueError("
    )
    assert code(original).strip() == "ids = time_ids.repeat(batch_size, 1)"
    assert "negative_ids = negative_time_ids.repeat(batch_size, 1)" in code(mirror)


def test_a_fresh_counterpart_name_never_clashes():
    _, _, pairing = propagation(
        "embeds = prompt_embeds.float()\nnoise_pred = self.unet(latents, encoder_hidden_states=embeds)\n",
        {"prompt_embeds": "negative_prompt_embeds"},
        taken={"negative_embeds"},
    )
    assert pairing.pairs["embeds"] == "negative_embeds_2"


@pytest.mark.parametrize(
    "text",
    [
        "rows = prompt_embeds.shape[0]\nnoise_pred = self.unet(latents, rows=rows)\n",
        "embeds = prompt_embeds.sum(0)\nnoise_pred = self.unet(latents, encoder_hidden_states=embeds)\n",
        "noise_pred = self.unet(latents, encoder_hidden_states=prompt_embeds)\nkeep = prompt_embeds\n",
    ],
    ids=["batch-size", "reduction", "after-the-call"],
)
def test_reading_the_doubled_batch_is_refused_at_the_read(text):
    with pytest.raises(ConversionError, match="read with its CFG-doubled batch") as error:
        propagation(text, {"prompt_embeds": "negative_prompt_embeds"})
    assert error.value.location.line in (2, 3)


def test_batch_free_attributes_of_a_paired_tensor_may_be_read_anywhere():
    _, _, pairing = propagation(
        "dtype = prompt_embeds.dtype\nnoise_pred = self.unet(latents.to(dtype), encoder_hidden_states=prompt_embeds)\n",
        {"prompt_embeds": "negative_prompt_embeds"},
    )
    assert pairing.mirrored == () and pairing.pairs == {"prompt_embeds": "negative_prompt_embeds"}


def test_batch_free_attributes_may_be_passed_to_a_per_sample_method():
    _, _, pairing = propagation(
        "mask = mask.to(pick(mask.dtype, mask.device))\nnoise_pred = self.unet(latents, mask=mask)\n",
        {"mask": "negative_mask"},
    )
    assert pairing.pairs["mask"] == "negative_mask"
    assert "negative_mask = negative_mask.to(pick(negative_mask.dtype, negative_mask.device))" in rendered(
        pairing.mirrored[0][1].nodes
    )


def test_what_is_computed_only_from_a_value_both_conditions_share_is_shared_not_mirrored():
    """`resolution = torch.cat([resolution, resolution])` undone: one value for every guider batch, and so is what
    is built from it per sample, also inside an `if` (PixArt-α's resolution, HunyuanDiT's time ids)."""
    _, _, pairing = propagation(
        """\
        if large:
            added = {"resolution": resolution.to(device), "text": text}
        noise_pred = self.unet(latents, added_cond_kwargs=added)
        """,
        {"resolution": "resolution"},
    )
    assert pairing.mirrored == () and pairing.pairs == {"resolution": "resolution", "added": "added"}


def test_a_shared_value_read_by_a_reduction_is_still_refused():
    with pytest.raises(ConversionError, match="read with its CFG-doubled batch"):
        propagation("rows = ids.sum(0)\nnoise_pred = self.unet(latents, rows=rows)\n", {"ids": "ids"})


@pytest.mark.parametrize(
    "text",
    [
        "masks[: n // 2] = 0\nnoise_pred = self.unet(latents, masks=masks)\n",  # GLIGEN: the halves made to differ
        "masks.data = other\nnoise_pred = self.unet(latents, masks=masks)\n",
        "masks += 1\nnoise_pred = self.unet(latents, masks=masks)\n",
    ],
    ids=["subscript", "attribute", "augmented"],
)
def test_a_write_into_a_doubled_tensor_is_refused_at_it(text):
    for pairs in ({"masks": "masks"}, {"masks": "negative_masks"}):
        with pytest.raises(ConversionError, match="changed in place after it was doubled") as error:
            propagation(text, pairs)
        assert error.value.location.line == 2


def test_a_keyed_entry_written_into_a_paired_container_is_not_a_write_into_its_rows():
    _, _, pairing = propagation(
        'added["image_embeds"] = image_embeds\nnoise_pred = self.unet(latents, added_cond_kwargs=added)\n',
        {"added": "negative_added"},
    )
    assert pairing.pairs == {"added": "negative_added"}


def test_a_concatenation_of_one_tensor_with_itself_is_a_shared_value():
    found = snippet(
        SD_LOOP.replace(
            "prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])",
            "prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])\n"
            "    time_ids = torch.cat([time_ids, time_ids])",
        ).replace("encoder_hidden_states=prompt_embeds", "encoder_hidden_states=prompt_embeds, time_ids=time_ids")
    ).batched()
    assert [(s.target, s.cond, s.uncond) for s in found.cat_sites][-1] == ("time_ids", "time_ids", "time_ids")
    assert GuidanceField("time_ids", "time_ids", "time_ids") in found.fields


# -- the guidance transform ----------------------------------------------------------------------------------------
def test_unbatching_undoes_the_concatenations_and_removes_the_combine():
    found = snippet("do_cfg = guidance_scale > 1.0\n" + SD_LOOP.replace("self.do_classifier_free_guidance", "do_cfg"))
    cfg = found.batched()
    after = rendered(rewrite_statements(found.body, unbatching_replacements(cfg)))
    assert after == textwrap.dedent(
        """\
        self._guidance_scale = guidance_scale
        do_cfg = self.do_cfg
        for i, t in enumerate(timesteps):
            latent_model_input = latents
            latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
            noise_pred = self.unet(latent_model_input, t, encoder_hidden_states=prompt_embeds)[0]
            latents = self.scheduler.step(noise_pred, t, latents)[0]
        return Output(images=latents)
        """
    )


def test_the_batched_denoiser_runs_the_call_once_per_guider_batch_or_merged():
    cfg = snippet(SD_LOOP).batched()
    statements = guider_denoise(
        cfg,
        (
            GuidanceField("prompt_embeds", "prompt_embeds", "negative_prompt_embeds"),
            GuidanceField("latent_model_input", "latent_model_input", "latent_model_input"),
        ),
        "i",
        "t",
        "num_inference_steps",
    )
    assert rendered(statements) == textwrap.dedent(
        """\
        components.guider.set_state(step=i, num_inference_steps=num_inference_steps, timestep=t)
        guider_state = components.guider.prepare_inputs_from_block_state(block_state, {'prompt_embeds': ('prompt_embeds', 'negative_prompt_embeds'), 'latent_model_input': 'latent_model_input'})
        guider_batches = (
            merge_guider_batches(components.guider, guider_state, ('pred_uncond', 'pred_cond'))
            if components.config.batch_guider_calls
            else guider_state
        )
        for guider_state_batch in guider_batches:
            components.guider.prepare_models(components.unet)
            prompt_embeds = guider_state_batch.prompt_embeds
            latent_model_input = guider_state_batch.latent_model_input
            noise_pred = self.unet(latent_model_input, t, encoder_hidden_states=prompt_embeds)[0]
            guider_state_batch.noise_pred = noise_pred
            components.guider.cleanup_models(components.unet)
        split_guider_predictions(guider_state, guider_batches)
        noise_pred = components.guider(guider_state).pred
        """
    )


def test_separate_passes_label_each_batchs_cache_context_and_set_per_step_scales_on_the_guider():
    body = TRUE_CFG.replace("do_true_cfg = guidance_scale > 1 and negative_prompt_embeds is not None\n", "")
    body = body.replace("do_true_cfg", "self.do_classifier_free_guidance").replace(
        "for i, t in enumerate(timesteps):\n",
        "for i, t in enumerate(timesteps):\n    s = guidance_scale_2 if t < boundary else guidance_scale\n",
    )
    body = body.replace("neg_noise_pred + guidance_scale *", "neg_noise_pred + s *")
    # `s = a if ... else b` is no per-step scale the detector follows (the planner refuses the scale later)
    assert snippet(body).separate().step_scales == ()
    body = body.replace(
        "    s = guidance_scale_2 if t < boundary else guidance_scale\n",
        "    s = guidance_scale\n    if t < boundary:\n        s = guidance_scale_2\n",
    )
    cfg = snippet(body).separate()
    # one call per guider batch, never merged: the source made one call per condition
    assert rendered(guider_denoise(cfg, cfg.fields, "i", "t", "len(timesteps)")) == textwrap.dedent(
        """\
        with guider_attributes(components.guider, guidance_scale=s):
            components.guider.set_state(step=i, num_inference_steps=len(timesteps), timestep=t)
            guider_state = components.guider.prepare_inputs_from_block_state(block_state, {'prompt_embeds': ('prompt_embeds', 'negative_prompt_embeds')})
            for guider_state_batch in guider_state:
                components.guider.prepare_models(self.transformer)
                prompt_embeds = guider_state_batch.prompt_embeds
                with self.transformer.cache_context(guider_batch_label(components.guider, guider_state_batch, {'pred_cond': 'cond', 'pred_uncond': 'uncond'})):
                    noise_pred = self.transformer(hidden_states=latents, timestep=t, encoder_hidden_states=prompt_embeds)[0]
                guider_state_batch.noise_pred = noise_pred
                components.guider.cleanup_models(self.transformer)
            noise_pred = components.guider(guider_state).pred
        """
    )


def test_branched_batches_prepare_their_arguments_and_share_one_call():
    cfg = snippet(BRANCHED).branched()
    text = rendered(guider_denoise(cfg, cfg.fields, "i", "t", "len(timesteps)"))
    assert "denoiser_calls = []\nfor guider_state_batch in guider_state:\n" in text
    assert (
        "    denoiser_calls.append(denoiser_call(guider_state_batch, model_input, embeds_input, "
        "timestep=timestep_input))\n" in text
    )
    assert (
        "for guider_state_batch, denoiser_output in run_denoiser_calls(components.guider, "
        "self.transformer, denoiser_calls, ('pred_cond', 'pred_uncond'), "
        "merge=components.config.batch_guider_calls):\n"
        "    model_out = denoiser_output[0]\n"
        "    guider_state_batch.noise_pred = model_out\n" in text
    )
    assert text.endswith("noise_pred = components.guider(guider_state).pred\n")


# -- the image-encode split (normalize) ----------------------------------------------------------------------------
ENCODING_HELPER = """\
def prepare_latents(self, image, timestep, batch_size, dtype, generator=None):
    image = image.to(dtype=dtype)
    batch_size = batch_size * 2
    init_latents = self.vae.encode(image).latent_dist.sample(generator)
    init_latents = init_latents.repeat(batch_size // init_latents.shape[0], 1, 1, 1)
    noise = torch.randn(init_latents.shape, generator=generator)
    return self.scheduler.add_noise(init_latents, noise, timestep)
"""
ENCODING_CALL = "latents = self.prepare_latents(latents, timesteps[:1], 2, prompt_embeds.dtype, generator=None)\n"


def encoding_split(helper: str):
    """`split_image_encode` on a pipeline with a VAE whose `__call__` calls `helper` before the loop."""
    text = PIPELINE.replace("unet, scheduler,", "unet, vae, scheduler,").replace("unet=unet,", "unet=unet, vae=vae,")
    body = textwrap.indent(ENCODING_CALL + SD_LOOP, " " * 8).rstrip("\n")
    text = text.format(body=body, methods="\n" + textwrap.indent(helper, " " * 4))
    source = parse_source(text, "snippet.py")
    facts = analyze_class(source, find_pipeline_class(source))
    statements = call_body(facts)
    # the helper call is a stage of its own, after the one setting per-call state
    return statements, split_image_encode(facts, [statements[:1], statements[1:2]])


def test_the_vae_encode_is_split_out_of_the_helper_that_does_it():
    statements, split = encoding_split(ENCODING_HELPER)
    assert (split.helper, split.encoder, split.latents) == (
        "prepare_latents",
        "prepare_latents_vae_encode",
        "init_latents",
    )
    assert split.call_site is statements[1]
    # built nodes carry LibCST's default spacing (`image = latents`): the formatter settles it
    assert [" ".join(text.replace(" = ", "=").split()) for text in texts([*split.encode, split.call])] == [
        "image_latents=self.prepare_latents_vae_encode(image=latents, dtype=prompt_embeds.dtype, generator=None)",
        "latents=self.prepare_latents(timestep=timesteps[:1], batch_size=2, generator=None, "
        "init_latents=image_latents)",
    ]
    assert lines(split.methods["prepare_latents_vae_encode"]) == textwrap.dedent(
        """\
        def prepare_latents_vae_encode(self, image, dtype, generator=None):
            image = image.to(dtype=dtype)
            init_latents = self.vae.encode(image).latent_dist.sample(generator)

            return init_latents"""
    )
    # what the rest still reads of the part before the encode is recomputed there
    assert lines(split.methods["prepare_latents"]) == textwrap.dedent(
        """\
        def prepare_latents(self, timestep, batch_size, generator=None, *, init_latents):
            batch_size = batch_size * 2
            init_latents = init_latents.repeat(batch_size // init_latents.shape[0], 1, 1, 1)
            noise = torch.randn(init_latents.shape, generator=generator)
            return self.scheduler.add_noise(init_latents, noise, timestep)"""
    )


def test_a_split_that_would_run_a_statement_twice_keeps_the_helper_whole():
    helper = ENCODING_HELPER.replace("batch_size = batch_size * 2", "batch_size = batch_size // image.shape[0]")
    statements, split = encoding_split(helper)
    assert isinstance(split, NotSplit) and split.node is statements[1]
    assert split.reason == "the rest of `prepare_latents` reads `image`, computed by a statement that cannot run twice"


def test_a_value_both_branches_set_is_per_batch_when_the_cfg_branch_concatenates_it_or_sets_a_constant():
    # with CFG off the `else` runs, as in the source; with CFG on the concatenation is undone per guider batch
    body = SD_LOOP.replace(
        "    prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])\n",
        "    prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])\n"
        "    extra_mask = None\n"
        "else:\n    prompt_embeds = plain_embeds\n    extra_mask = mask\n",
    )
    cfg = snippet(body).batched()
    assert fields(cfg) == [("prompt_embeds", "prompt_embeds", "negative_prompt_embeds")]


def test_per_sample_lists_concatenated_for_cfg_are_a_concatenation_site():
    body = SD_LOOP.replace(
        "prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])",
        "prompt_embeds = list(negative_prompt_embeds) + list(prompt_embeds)",
    )
    cfg = snippet(body).batched()
    assert [(s.target, s.cond, s.uncond) for s in cfg.cat_sites] == [
        ("prompt_embeds", "prompt_embeds", "negative_prompt_embeds")
    ]


def test_a_placeholder_set_in_init_and_in_call_before_any_read_is_per_call_state():
    # `self._guidance_scale = 1.0` in `__init__` is a placeholder no call reads: `__call__` sets it first
    source = parse_source(
        PIPELINE.replace(
            "        super().__init__()\n", "        super().__init__()\n        self._guidance_scale = 1.0\n"
        ).format(body="        self._guidance_scale = guidance_scale\n        x = 1", methods=""),
        "snippet.py",
    )
    facts = analyze_class(source, find_pipeline_class(source))
    assert "do_classifier_free_guidance" in facts.per_call_properties
    # read (through the property) before `__call__` sets it: the placeholder is read, it stays a member
    source = parse_source(
        PIPELINE.replace(
            "        super().__init__()\n", "        super().__init__()\n        self._guidance_scale = 1.0\n"
        )
        .format(body="        x = 1", methods="")
        .replace(
            "self._guidance_scale = guidance_scale",
            "on = self.do_classifier_free_guidance\n        self._guidance_scale = guidance_scale",
            1,
        ),
        "snippet.py",
    )
    assert "on = self.do_classifier_free_guidance\n        self._guidance_scale = guidance_scale" in source.text
    facts = analyze_class(source, find_pipeline_class(source))
    assert "do_classifier_free_guidance" not in facts.per_call_properties


def _helper(text: str) -> cst.FunctionDef:
    return cst.parse_module(textwrap.dedent(text)).body[0]


@pytest.mark.parametrize(
    ("helper", "doubled"),
    [
        # doubled under the flag, then returned with a result that is not
        (
            """
            def encode(self, p, cfg):
                e = self.enc(p)
                m = self.mask(p)
                if cfg:
                    n = self.enc("")
                    e = torch.cat([n, e])
                return e, m
            """,
            (True, False),
        ),
        # the conditional expression form, and a repeat (both halves the same) counts too
        ("def encode(self, p, cfg):\n    e = torch.cat([e] * 2) if cfg else e\n    return e\n", (True,)),
        # reassigned after the concatenation: what comes back cannot be told to be the doubled batch
        (
            "def encode(self, p, cfg):\n    if cfg:\n        e = torch.cat([n, e])\n    e = e[:1]\n    return e\n",
            (False,),
        ),
        # doubled only when something else holds too: not always doubled when the flag is
        (
            "def encode(self, p, cfg, n=None):\n    if cfg and n is not None:\n        e = torch.cat([n, e])\n    return e\n",
            (False,),
        ),
        # joined along another dimension (sequences, not the batch)
        ("def encode(self, p, cfg):\n    if cfg:\n        e = torch.cat([n, e], dim=1)\n    return e\n", (False,)),
        # not the helper's one and last return, or not names: which result is doubled cannot be told
        ("def encode(self, p, cfg):\n    if p is None:\n        return e\n    return e\n", None),
        ("def encode(self, p, cfg):\n    return {'e': e}\n", None),
    ],
)
def test_which_results_a_helper_returns_doubled_under_its_flag(helper, doubled):
    from modularize.analysis.guidance.helper_results import doubled_results

    assert doubled_results(_helper(helper), "cfg") == doubled


def test_a_helper_returning_a_doubled_batch_is_split_where_call_receives_it():
    """The detector asks for the split (the analysis restarts on the rewritten `__call__`); the guider then pairs
    the halves, in the prediction's chunk order, under a name `__call__` does not read afterwards."""
    from modularize.analysis.analyze import analyze
    from modularize.normalize.halved_results import HelperDoublesResults

    helper = """
    def _encode(self, embeds, do_cfg, negative=None):
        if do_cfg:
            embeds = torch.cat([embeds, negative])
        return embeds
    """
    body = """
    embeds = self._encode(prompt_embeds, self.do_classifier_free_guidance, negative_prompt_embeds)
    for i, t in enumerate(timesteps):
        latent_model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
        noise_pred = self.unet(latent_model_input, t, encoder_hidden_states=embeds)[0]
        if self.do_classifier_free_guidance:
            noise_pred_text, noise_pred_uncond = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)
        latents = self.scheduler.step(noise_pred, t, latents).prev_sample
    """
    found = snippet(body, helper)
    with pytest.raises(HelperDoublesResults) as signal:
        found.batched()
    assert signal.value.names == ("embeds",) and signal.value.positions == (0, 1)  # conditional part first
    output = "from diffusers.pipelines.pipeline_utils import ImagePipelineOutput as Output\n"
    plan = analyze(parse_source(output + found.source.text, "snippet.py"))
    assert [(f.name, f.cond, f.uncond) for f in plan.guidance.fields][:1] == [("embeds", "embeds", "negative_embeds")]


def test_without_cfg_a_model_feeding_the_denoiser_runs_as_it_is_and_two_predictions_combined_are_refused():
    """A ControlNet-like model whose outputs the last model call reads is auxiliary (no guidance to find); two
    models whose predictions are combined after both calls are guidance this converter does not know."""
    feeding = """
    for i, t in enumerate(timesteps):
        hints = self.transformer(latents, t, encoder_hidden_states=prompt_embeds)
        noise_pred = self.transformer_2(latents, t, encoder_hidden_states=prompt_embeds, hints=hints)[0]
        latents = self.scheduler.step(noise_pred, t, latents).prev_sample
    """
    assert snippet(feeding).batched() is None
    combined = """
    for i, t in enumerate(timesteps):
        positive = self.transformer(latents, t, encoder_hidden_states=prompt_embeds)[0]
        negative = self.transformer_2(latents, t, encoder_hidden_states=negative_prompt_embeds)[0]
        noise_pred = negative + guidance_scale * (positive - negative)
        latents = self.scheduler.step(noise_pred, t, latents).prev_sample
    """
    found = snippet(combined)
    with pytest.raises(ConversionError, match="more than one model predicts in each step") as refusal:
        found.batched()
    assert refusal.value.location.line == found.line("negative = self.transformer_2")


def test_a_list_doubled_item_by_item_for_cfg_is_one_value_both_conditions_share_merged_layer_by_layer():
    """A T2I-Adapter's features: one batched tensor per layer, each repeated for CFG in a loop over the list; what
    is computed from them per item (`[s.clone() for s in states]`) is shared and per layer too."""
    from modularize.analysis.guidance.doubled_batch import repeated_per_item

    loop = cst.parse_statement("for k, v in enumerate(states):\n    states[k] = torch.cat([v] * 2, dim=0)\n")
    assert repeated_per_item(loop) == "states"
    other = cst.parse_statement("for k, v in enumerate(states):\n    states[k] = torch.cat([v, w], dim=0)\n")
    assert repeated_per_item(other) is None
    body = """
    states = self.transformer(latents)
    if self.do_classifier_free_guidance:
        for k, v in enumerate(states):
            states[k] = torch.cat([v] * 2, dim=0)
    for i, t in enumerate(timesteps):
        residuals = [s.clone() for s in states]
        latent_model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
        noise_pred = self.unet(latent_model_input, t, encoder_hidden_states=prompt_embeds, extra=residuals)[0]
        if self.do_classifier_free_guidance:
            noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)
        latents = self.scheduler.step(noise_pred, t, latents)[0]
    """
    cfg = snippet(body).batched()
    assert [(f.name, f.cond, f.uncond, f.layers) for f in cfg.fields if f.name == "residuals"] == [
        ("residuals", "residuals", "residuals", True)
    ]
    (site,) = cfg.cat_sites
    assert (site.target, site.layers) == ("states", True) and isinstance(site.node, cst.If)
    text = rendered(guider_denoise(cfg, cfg.fields, "i", "t", "len(timesteps)"))
    assert "layers=('residuals',)" in text and "residuals = fresh_layers(guider_state_batch.residuals)" in text


DRAWN_CONTROL = """\
def prepare_control(self, image, do_classifier_free_guidance):
    return torch.cat([image] * 2) if do_classifier_free_guidance else image
"""
CONTROLLED_LOOP = SD_LOOP.replace(
    "encoder_hidden_states=prompt_embeds)", "encoder_hidden_states=prompt_embeds, cond=control)"
)


def _split(cfg) -> str:
    (split,) = [new for _, new in cfg.rewrites if isinstance(new, cst.FlattenSentinel)]
    return lines(split.nodes[1])


def test_a_value_repeated_for_cfg_before_a_random_draw_is_split_into_each_batchs_half():
    """Encoding a control image repeated for CFG samples noise per half (SD3 ControlNet): the halves differ, so the
    doubled batch is encoded as the standard pipeline encodes it, and split: each guider batch gets its own half."""
    body = (
        "control = self.prepare_control(latents, self.do_classifier_free_guidance)\n"
        "control = self.transformer.encode(control).latent_dist.sample()\n" + CONTROLLED_LOOP
    )
    cfg = snippet(body, DRAWN_CONTROL).batched()
    assert _split(cfg) == (
        "if self.do_classifier_free_guidance:\n"
        "    negative_control, control = control.chunk(2)\n"
        "else:\n"
        "    negative_control = None"
    )
    assert GuidanceField("control", "control", "negative_control") in cfg.fields


def test_a_list_of_values_drawn_from_repeats_is_split_item_by_item():
    """Several control images (multi-ControlNet), each repeated, encoded by sampling, appended to a list handed on
    under another name: the list is split after that, item by item, and merged layer by layer."""
    body = (
        "found = []\n"
        "for one in [latents, latents]:\n"
        "    one = self.prepare_control(one, self.do_classifier_free_guidance)\n"
        "    one = self.transformer.encode(one).latent_dist.sample()\n"
        "    one = one * 2\n"
        "    found.append(one)\n"
        "control = found\n" + CONTROLLED_LOOP
    )
    cfg = snippet(body, DRAWN_CONTROL).batched()
    assert _split(cfg) == (
        "if self.do_classifier_free_guidance:\n"
        "    negative_control = [item.chunk(2)[0] for item in control]\n"
        "    control = [item.chunk(2)[1] for item in control]\n"
        "else:\n"
        "    negative_control = None"
    )
    assert GuidanceField("control", "control", "negative_control", layers=True) in cfg.fields


def test_a_value_repeated_for_cfg_before_a_random_draw_no_model_runs_on_is_refused():
    """Noise drawn for the doubled batch with no model run on it: the helper is told not to repeat, and then one
    value per guider batch would draw other noise than the standard pipeline drew."""
    body = (
        "control = self.prepare_control(latents, self.do_classifier_free_guidance)\n"
        "control = control + torch.randn_like(control)\n" + CONTROLLED_LOOP
    )
    found = snippet(body, DRAWN_CONTROL)
    with pytest.raises(ConversionError, match="repeated for CFG before a random draw") as refusal:
        found.batched()
    assert refusal.value.location.line == found.line("torch.randn_like(control)")


# -- values for the doubled batch, undone ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("timestep, _ = timestep.chunk(2)", "timestep"),
        ("_, timestep = timestep.chunk(2)", "timestep"),
        ("timestep, *_ = timestep.chunk(2)", "timestep"),
        ("timestep = timestep.chunk(2)[0]", "timestep"),
        ("timestep, _ = other.chunk(2)", None),  # another value's half
        ("timestep, rest = timestep.chunk(2)", None),  # both halves kept
        ("timestep = timestep.chunk(3)[0]", None),
    ],
)
def test_a_value_reassigned_one_half_of_itself(line, name):
    from modularize.analysis.guidance.batched import _halved_name

    assert _halved_name(cst.parse_statement(line)) == name


@pytest.mark.parametrize(
    ("expression", "doubled"),
    [
        ("2 * n if cfg else n", True),
        ("n * 2 if cfg else n", True),
        ("2 if cfg else 1", True),
        ("torch.cat([x] * 2) if cfg else x", True),
        ("torch.cat([x, x]) if cfg else x", True),
        ("x.repeat(2, 1) if cfg else x", True),
        ("3 * n if cfg else n", False),
        ("2 * n if cfg else m", False),
        ("torch.cat([u, x]) if cfg else x", False),  # a pair, not a repeat
    ],
)
def test_sizes_and_repeats_for_the_doubled_batch_inside_expressions(expression, doubled):
    from modularize.analysis.guidance.batched import _doubled_size_or_value

    assert _doubled_size_or_value(cst.parse_expression(expression)) is doubled


HALVED_THEN_DOUBLED = """\
if self.do_classifier_free_guidance:
    prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
hints = [self.prepare_hint(latents, self.do_classifier_free_guidance)]
for k, one in enumerate(hints):
    if self.do_classifier_free_guidance:
        one = {halving}
    if self.do_classifier_free_guidance:
        one = torch.cat([one] * 2)
    hints[k] = one.to(prompt_embeds.dtype)
for i, t in enumerate(timesteps):
    latent_model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
    noise_pred = self.unet(latent_model_input, t, encoder_hidden_states=prompt_embeds, hints=hints)[0]
    if self.do_classifier_free_guidance:
        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
        noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)
    latents = self.scheduler.step(noise_pred, t, latents)[0]
"""


HINT_HELPER = """\
def prepare_hint(self, hint, do_classifier_free_guidance):
    if do_classifier_free_guidance:
        hint = torch.cat([hint] * 2)
    return hint
"""


def test_a_shared_value_halved_before_the_loop_is_one_guider_batchs_already():
    """PAG pipelines' control images: `one = one.chunk(2)[0]` then `one = torch.cat([one] * 2)` under the flag, of a
    value both conditions share: a guider batch has one half; the halving goes, the doubling is undone."""
    found = snippet(HALVED_THEN_DOUBLED.format(halving="one.chunk(2)[0]"), HINT_HELPER)
    cfg = found.batched()
    removed = [node for node, new in cfg.rewrites if isinstance(new, cst.RemovalSentinel)]
    assert [found.line_of(node) for node in removed] == [found.line("        one = one.chunk(2)[0]") - 1]
    assert ("one", "one", "one") in [(s.target, s.cond, s.uncond) for s in cfg.cat_sites]


def test_one_half_of_a_value_not_known_to_be_shared_is_refused():
    halved_only = HALVED_THEN_DOUBLED.format(halving="one.chunk(2)[0]").replace(
        "    if self.do_classifier_free_guidance:\n        one = torch.cat([one] * 2)\n", ""
    )
    with pytest.raises(ConversionError, match="one half of a CFG batch that is not a value both conditions share"):
        snippet(halved_only, HINT_HELPER).batched()


@pytest.mark.parametrize(
    ("expression", "free"),
    [
        ("mask.shape[1]", True),
        ("mask.shape[-1]", True),
        ("mask.shape[0]", False),
        ("mask.shape[2:]", True),
        ("mask.shape[:2]", False),
        ("mask[:1]", True),  # the first sample of a value both conditions share
        ("embeds[:1]", False),  # ... not of a pair's conditional half
        ("mask[:2]", False),
    ],
)
def test_reads_that_do_not_depend_on_the_batch(expression, free):
    from modularize.analysis.guidance.pairing import _batch_free

    pairs = {"mask": "mask", "embeds": "negative_embeds"}
    assert _batch_free(cst.parse_expression(expression), pairs) is free


# -- a repeat a model runs on before the loop ------------------------------------------------------------------------
REPEATING_HELPER = """\
def prepare_image(self, image, guided):
    if guided:
        image = torch.cat([image] * 2)
    return image

def prepare_hint(self, image, guided, guess_mode=False):
    if guided and not guess_mode:
        image = torch.cat([image] * 2)
    return image
"""


def _repeat_handling(prefix: str) -> str:
    """How the batched-CFG detector has the repeating helper's result handled: kept doubled and halved after the
    last statement computing it (`halved after: <that statement>`), or the helper told not to repeat."""
    cfg = snippet(textwrap.dedent(prefix) + SD_LOOP, methods=REPEATING_HELPER).batched()
    for node, new in cfg.rewrites:
        if isinstance(new, cst.FlattenSentinel):
            kept, halving = new.nodes
            assert kept is node and lines(halving) == (
                "if self.do_classifier_free_guidance:\n    image = image[: image.shape[0] // 2]"
            )
            return f"halved after: {lines(node)}"
        if isinstance(new, cst.Name) and new.value == "False":
            return "not repeated"
    raise AssertionError("the helper's repeat was not handled")


def test_a_repeat_a_model_runs_on_before_the_loop_is_kept_and_halved_after_its_last_computation():
    nested = """\
    if latents is not None:
        image = self.prepare_image(latents, self.do_classifier_free_guidance)
        size = image.shape[-2:]
        image = self.transformer.encode(image).latent_dist.mode()
        image = image.to(latents.dtype) * 2
    """
    assert _repeat_handling(nested) == "halved after: image = image.to(latents.dtype) * 2"
    top_level = "image = self.prepare_image(latents, self.do_classifier_free_guidance)\nimage = self.unet(image)\n"
    assert _repeat_handling(top_level) == "halved after: image = self.unet(image)"
    # a helper repeating under more than the flag, called with constants that leave the flag alone deciding
    hint = "image = self.prepare_hint(latents, self.do_classifier_free_guidance, guess_mode=False)\nimage = self.unet(image)\n"
    assert _repeat_handling(hint) == "halved after: image = self.unet(image)"


@pytest.mark.parametrize(
    "prefix",
    [
        # no model runs on the repeat: one value per guider batch computes the same
        "image = self.prepare_image(latents, True)\nimage = image * 2\n",
        # a read of its batch: computed on the doubled batch it would be twice as large
        "image = self.prepare_image(latents, True)\nrows = image.shape[0]\nimage = self.unet(image)\n",
        # written again after the block that computes it: the halving would come too early
        "if latents is not None:\n    image = self.prepare_image(latents, True)\n    image = self.unet(image)\n"
        "image = image + 1\n",
        # rebound to a value not computed sample by sample from the doubled one: its first half is not one half
        "image = self.prepare_image(latents, True)\nimage = self.unet(image)\nimage = image[:1]\n",
        "image = self.prepare_image(latents, True)\nimage = self.unet(image)\nimage = image.repeat(2, 1)\n",
        "image = self.prepare_image(latents, True)\nimage = self.unet(image)\nimage = self.unet(latents)\n",
        # it repeats only without guess mode, which the call leaves to the user: halving on the flag could halve
        # a batch never doubled
        "image = self.prepare_hint(latents, True, guess_mode=boundary > 1)\nimage = self.unet(image)\n",
    ],
)
def test_a_repeat_is_not_kept_where_halving_it_would_not_give_the_same_values(prefix):
    assert _repeat_handling(prefix.replace("True", "self.do_classifier_free_guidance")) == "not repeated"


def test_an_inline_separate_pass_condition_over_per_call_state_set_once_asks_to_be_named():
    """`if self.guidance_scale > 1.0:` around the unconditional pass: a test over state `__call__` sets once, named
    as a local (`normalize.cfg_condition`) and read again; one over state set twice is no flag."""
    from modularize.normalize.cfg_condition import InlineCfgCondition

    inline = TRUE_CFG.replace("do_true_cfg = guidance_scale > 1 and negative_prompt_embeds is not None\n", "")
    inline = inline.replace("if do_true_cfg:", "if self.guidance_scale > 1.0:")
    with pytest.raises(InlineCfgCondition) as signal:
        snippet(inline).separate()
    assert code(signal.value.test) == "self.guidance_scale > 1.0"
    twice = "self._guidance_scale = guidance_scale * 2\n" + inline
    assert snippet(twice).separate() is None  # evaluated once it could differ: not read as a CFG flag


@pytest.mark.parametrize(
    ("repeat", "mirrored"),
    [
        ("prompt_embeds.repeat_interleave(repeats=3, dim=0)", True),  # each sample in place: halves stay halves
        ("prompt_embeds.repeat_interleave(3, 0)", True),
        ("prompt_embeds.repeat_interleave(3)", False),  # flattened
    ],
)
def test_a_repeat_of_each_sample_along_a_dimension_is_mirrored_onto_the_unconditional_half(repeat, mirrored):
    cat = "    prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])\n"
    body = SD_LOOP.replace(cat, cat + f"prompt_embeds = {repeat}\n")
    if not mirrored:
        with pytest.raises(ConversionError, match="read with its CFG-doubled batch"):
            snippet(body).batched()
        return
    pattern = snippet(body).batched()
    assert fields(pattern)[0] == ("prompt_embeds", "prompt_embeds", "negative_prompt_embeds")
    ((_, sentinel),) = pattern.mirrored
    mirror = repeat.replace("prompt_embeds", "negative_prompt_embeds", 1)
    assert f"negative_prompt_embeds = {mirror}" in rendered(sentinel.nodes)


@pytest.mark.parametrize(
    ("first", "second", "renamed"),
    [
        ("embeds", "negative_embeds", {"embeds": "negative_embeds"}),
        ("embeds.to(dtype)", "negative_embeds.to(dtype)", {"embeds": "negative_embeds"}),
        ("f(a, b)", "f(na, nb)", {"a": "na", "b": "nb"}),
        ("embeds.to(dtype)", "negative_embeds.float()", None),
        ("f(a, a)", "f(na, nb)", None),  # one variable cannot stand for two
        ("f(a, b)", "f(c, c)", None),  # nor two for one
        ("x if flag else y", "nx if flag else y", {"x": "nx"}),
    ],
)
def test_separate_passes_pair_an_argument_written_as_the_same_expression_of_other_variables(first, second, renamed):
    from modularize.analysis.guidance.separate_passes import _renamed_variables

    assert _renamed_variables(cst.parse_expression(first), cst.parse_expression(second)) == renamed


@pytest.mark.parametrize(
    ("test", "flag", "required"),
    [
        ("do_cfg and negative is not None", "do_cfg", ["negative is not None"]),
        ("scale > 1.0 and negative is not None", "scale > 1.0", ["negative is not None"]),
        ("do_cfg and other is not None", "do_cfg and other is not None", []),  # not an input of the pass
        ("do_cfg", "do_cfg", []),
    ],
)
def test_a_separate_pass_guided_only_while_its_input_exists_has_the_flag_and_a_requirement(test, flag, required):
    from modularize.analysis.guidance.separate_passes import _flag_and_requirements, _ModelCall

    call = cst.parse_expression("self.transformer(x, encoder_hidden_states=negative.to(dtype))")
    found, needed = _flag_and_requirements(cst.parse_expression(test), [_ModelCall(None, call, "out", None, ())])
    assert code(found).strip() == flag and [code(n).strip() for n in needed] == required


def test_separate_passes_giving_other_keywords_run_each_passs_own_call_on_the_conditional_names():
    source = TRUE_CFG.replace(
        "timestep=t, encoder_hidden_states=prompt_embeds)",
        "timestep=t, guidance=g, encoder_hidden_states=prompt_embeds)",
    )
    cfg = snippet(source).separate()
    assert [(f.name, f.cond, f.uncond) for f in cfg.fields] == [
        ("prompt_embeds", "prompt_embeds", "negative_prompt_embeds")
    ]
    # the unconditional batch's call: its own keywords, the batch's bound names, the conditional prediction's name
    assert texts([cfg.uncond_call_statement]) == [
        'with self.transformer.cache_context("uncond"):\n'
        "    noise_pred = self.transformer(\n"
        "        hidden_states=latents, timestep=t, encoder_hidden_states=prompt_embeds\n"
        "    )[0]"
    ]
    assert snippet(TRUE_CFG).separate().uncond_call_statement is None  # the same keywords: one call serves both


RENAMED_CUSTOM = """\
do_true_cfg = guidance_scale > 1 and negative_prompt_embeds is not None
for i, t in enumerate(timesteps):
    noise_pred_text = self.transformer(hidden_states=latents, timestep=t, encoder_hidden_states=prompt_embeds)[0]
    if do_true_cfg:
        noise_pred_uncond = self.transformer(
            hidden_states=latents, timestep=t, encoder_hidden_states=negative_prompt_embeds
        )[0]
        noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)
        noise_pred = noise_pred * (noise_pred_text.norm() / noise_pred.norm())
    else:
        noise_pred = noise_pred_text
    latents = self.scheduler.step(noise_pred, t, latents)[0]
"""


def test_a_custom_combine_naming_the_guided_prediction_anew_returns_that_name():
    """The combine assigns `noise_pred`, the `else` names the conditional prediction so: the guider subclass's
    result is `noise_pred`, not the conditional prediction it started from (LongCat-Image's renormalized CFG)."""
    cfg = snippet(RENAMED_CUSTOM).separate()
    assert cfg.guided == "noise_pred" and cfg.combine is not None and cfg.combine.result == "noise_pred"


@pytest.mark.parametrize(
    ("reshape", "mirrored"),
    [
        ("if prompt_embeds.ndim == 3:\n    prompt_embeds = prompt_embeds.unsqueeze(1)\n", True),  # Allegro
        ("if prompt_embeds.ndim == 3:\n    prompt_embeds = prompt_embeds.squeeze(2)\n", True),
        ("if prompt_embeds.ndim == 3:\n    prompt_embeds = prompt_embeds.unsqueeze(0)\n", False),  # the batch's own
        ("if prompt_embeds.shape[0] == 2:\n    prompt_embeds = prompt_embeds.unsqueeze(1)\n", False),  # reads it
    ],
)
def test_a_branch_reshaping_a_paired_value_behind_its_batch_is_mirrored_onto_its_counterpart(reshape, mirrored):
    cat = "    prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])\n"
    body = SD_LOOP.replace(cat, cat + reshape)
    if not mirrored:
        with pytest.raises(ConversionError, match="read with its CFG-doubled batch"):
            snippet(body).batched()
        return
    pattern = snippet(body).batched()
    assert fields(pattern)[0] == ("prompt_embeds", "prompt_embeds", "negative_prompt_embeds")
    ((_, sentinel),) = pattern.mirrored
    text = rendered(sentinel.nodes)
    assert "negative_prompt_embeds = negative_prompt_embeds." in text  # the counterpart it had, reassigned
    assert text.index("negative_prompt_embeds =") < text.index("    prompt_embeds = prompt_embeds.")  # before it


# -- lists of doubled values (IP-Adapter embeddings) -----------------------------------------------------------------
LISTING_HELPER = """\
def prepare_embeds(self, images, device, do_classifier_free_guidance):
    found = []
    for i, single in enumerate(images):
        negative = torch.zeros_like(single)
        if do_classifier_free_guidance:
            single = torch.cat([negative, single], dim=0)
        single = single.to(device=device)
        found.append(single)
    return found
"""


def test_a_helper_returning_a_list_of_doubled_values_says_so():
    from modularize.analysis.guidance.helper_results import LISTED, doubled_results

    helper = cst.parse_statement(textwrap.dedent(LISTING_HELPER))
    assert doubled_results(helper, "do_classifier_free_guidance") == (LISTED,)
    # appending something else than the doubled value: no list of doubled values
    other = LISTING_HELPER.replace("found.append(single)", "found.append(negative)")
    assert doubled_results(cst.parse_statement(textwrap.dedent(other)), "do_classifier_free_guidance") == (False,)


def test_a_list_of_doubled_values_is_split_where_received_and_paired_layer_by_layer():
    from modularize.normalize.halved_results import HelperDoublesResults, with_halved_results

    body = (
        "if latents is not None:\n"
        "    embeds = self.prepare_embeds([latents], latents.device, self.do_classifier_free_guidance)\n"
        "extra = {'image_embeds': embeds} if latents is not None else None\n"
        + SD_LOOP.replace("encoder_hidden_states=prompt_embeds)", "encoder_hidden_states=prompt_embeds, extra=extra)")
    )
    with pytest.raises(HelperDoublesResults) as signal:
        snippet(body, LISTING_HELPER).batched()
    assert signal.value.listed == ("embeds",)
    found = snippet(body, LISTING_HELPER)
    split, _ = with_halved_results(found.body, signal.value, set(), found.source.positions)
    cfg = snippet(rendered(split), LISTING_HELPER).batched()
    assert ("extra", "extra", "negative_extra", True) in [(f.name, f.cond, f.uncond, f.layers) for f in cfg.fields]
    assert not cfg.pairing_helpers  # served, not gated


@pytest.mark.parametrize(
    ("line", "found"),
    [
        (
            "for k, v in enumerate(embeds):\n    embeds[k] = torch.cat([negative[k], v])\n",
            ("embeds", "negative", "negative"),
        ),
        (
            "for k, v in enumerate(embeds):\n    embeds[k] = torch.cat([v, negative[k]])\n",
            ("embeds", "negative", "embeds"),
        ),
        ("for k, v in enumerate(embeds):\n    embeds[k] = torch.cat([v, v])\n", None),
        ("for k, v in enumerate(embeds):\n    embeds[k] = torch.cat([negative[0], v])\n", None),
    ],
)
def test_a_list_concatenated_item_by_item_with_its_negative(line, found):
    from modularize.analysis.guidance.doubled_batch import paired_per_item

    assert paired_per_item(cst.parse_statement(line)) == found


def test_a_concatenation_under_the_negatives_existence_is_one_for_cfg():
    """`torch.cat([embeds, negative]) if negative is not None else embeds` (StableCascade's prior): doubled exactly when
    the negative exists, which the pipeline makes when CFG is on; and another made under the same test with it."""
    from modularize.analysis.guidance.batched import _doubled_when_negative_exists

    def choice(text):
        return cst.parse_expression(text)

    first = choice("torch.cat([embeds, negative]) if negative is not None else embeds")
    assert _doubled_when_negative_exists(first)
    pooled = choice("torch.cat([pooled, negative_pooled]) if negative is not None else pooled")
    assert not _doubled_when_negative_exists(pooled) and _doubled_when_negative_exists(pooled, [first.test])
    assert not _doubled_when_negative_exists(choice("torch.cat([embeds, other]) if flag else embeds"))
    assert not _doubled_when_negative_exists(
        choice("torch.cat([embeds, negative]) if negative is not None else negative")
    )


def test_a_concatenation_part_computed_in_place_is_named_first():
    from modularize.normalize.computed_cat_part import ComputedCatPart, nameable, with_named_part

    body = (
        "effnet = torch.cat([latents, torch.zeros_like(latents)]) if self.do_classifier_free_guidance else latents\n"
        + SD_LOOP.replace(
            "encoder_hidden_states=prompt_embeds)", "encoder_hidden_states=prompt_embeds, effnet=effnet)"
        )
    )
    found = snippet(body)
    with pytest.raises(ComputedCatPart) as signal:
        found.batched()
    assert code(signal.value.part) == "torch.zeros_like(latents)" and nameable(signal.value.part)
    named, _ = with_named_part(found.body, signal.value, {"latents"})
    assert texts(named[1:3]) == [
        "effnet_part1 = torch.zeros_like(latents)",
        "effnet = torch.cat([latents, effnet_part1]) if self.do_classifier_free_guidance else latents",
    ]
    assert not nameable(cst.parse_expression("torch.randn_like(latents)"))
    assert not nameable(cst.parse_expression("torch.zeros_like(self.encode(latents))"))
