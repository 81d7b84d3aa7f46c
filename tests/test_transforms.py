"""Each LibCST transform on a small before/after snippet."""

import textwrap

import libcst as cst
import pytest

from modularize.analysis.runtime_plumbing import find_runtime_plumbing, without_callbacks
from modularize.cst.node_index import NodeIndex
from modularize.cst.substitute import rewrite_statements, same_expression
from modularize.errors import ConversionError
from modularize.frontend.parse import code, parse_source
from modularize.normalize.early_return import EarlyReturnProblem, lower_early_return
from modularize.transforms.feature_gates import FeatureGate, gate_replacements
from modularize.transforms.helpers import as_static_helper
from modularize.transforms.imports import absolute_module, import_from, prune_unused_imports, relative_module
from modularize.transforms.self_to_components import self_to_components


def statements(text: str) -> list[cst.BaseStatement]:
    return list(cst.parse_module(textwrap.dedent(text)).body)


def render(nodes) -> str:
    return cst.Module(body=list(nodes)).code


MEANING = {
    "unet": "component",
    "scheduler": "component",
    "tokenizer": "component",
    "encode_prompt": "helper",
    "clip_skip": "per_call",
    "vae_scale_factor": "derived",
    "progress_bar": "inherited",
}


def meaning(name: str) -> str:
    return MEANING.get(name, "inherited")


def test_strip_runtime_drops_callbacks_interrupt_and_hooks_and_keeps_the_xla_step_marker():
    """`xm.mark_step()` cuts the XLA graph once per step, as in diffusers' own modular loops: it stays."""
    body = statements(
        """\
        callback_steps = kwargs.pop("callback_steps", None)
        self.check_inputs(prompt, callback_steps)
        for i, t in enumerate(timesteps):
            if self.interrupt:
                continue
            latents = self.scheduler.step(noise_pred, t, latents)[0]
            if callback_on_step_end is not None:
                callback_outputs = callback_on_step_end(self, i, t, {})
            if i == len(timesteps) - 1:
                progress_bar.update()
                if callback is not None and i % callback_steps == 0:
                    callback(i, t, latents)
            if XLA_AVAILABLE:
                xm.mark_step()
        self.maybe_free_model_hooks()
        return Output(images=image)
        """
    )
    drops, returns = find_runtime_plumbing(body)
    rewritten = [
        without_callbacks(s) for s in rewrite_statements(body, {d.node: cst.RemoveFromParent() for d in drops})
    ]
    assert render(rewritten) == textwrap.dedent(
        """\
        self.check_inputs(prompt, None)
        for i, t in enumerate(timesteps):
            latents = self.scheduler.step(noise_pred, t, latents)[0]
            if i == len(timesteps) - 1:
                progress_bar.update()
            if XLA_AVAILABLE:
                xm.mark_step()
        """
    )
    assert [d.popped for d in drops if d.popped] == ["callback_steps"]
    assert {d.safety for d in drops} == {"unsafe", "display-only"}
    assert code(returns[0].value) == "Output(images=image)"


def test_a_deprecation_warning_for_an_argument_kwargs_takes_is_dropped_and_nothing_else():
    body = statements(
        """\
        if "mask_feature" in kwargs:
            deprecation_message = "The use of `mask_feature` is deprecated."
            deprecate("mask_feature", "1.0.0", deprecation_message, standard_warn=False)
        if "scale" in kwargs:
            scale = kwargs["scale"]
        """
    )
    drops, _ = find_runtime_plumbing(body)
    assert [(d.node, d.safety) for d in drops] == [(body[0], "display-only")]
    assert "`mask_feature`, taken by `**kwargs`, is deprecated" in drops[0].why


def test_self_to_components_sorts_every_self_reference():
    (statement,) = statements(
        """\
        if isinstance(self, Mixin):
            embeds = self.encode_prompt(prompt, self.tokenizer, clip_skip=self.clip_skip, size=self.vae_scale_factor)
        """
    )
    rewritten, used = self_to_components(statement, meaning, {"clip_skip": "clip_skip"})
    assert code(rewritten) == textwrap.dedent(
        """\
        if isinstance(components, Mixin):
            embeds = self.encode_prompt(components, prompt, components.tokenizer, clip_skip=clip_skip, size=components.vae_scale_factor)
        """
    )
    assert set(used) == {"helper", "component", "per_call", "derived"}


def test_self_to_components_can_leave_members_on_the_block():
    (statement,) = statements("with self.progress_bar(total=n) as progress_bar:\n    x = self.unet(x)\n")
    rewritten, _ = self_to_components(statement, meaning, {}, keep_on_self=("progress_bar",))
    assert code(rewritten) == "with self.progress_bar(total=n) as progress_bar:\n    x = components.unet(x)\n"


def test_helper_methods_become_static_methods_taking_components():
    (function,) = statements(
        """\
        # Copied from somewhere.else
        def prepare_latents(self, batch_size, latents=None):
            latents = latents * self.scheduler.init_noise_sigma
            return self.encode_prompt(latents)
        """
    )
    helper, used = as_static_helper(
        function, meaning, "MyStep", "Copied from pkg.mod.Pipe.prepare_latents with self->components"
    )
    assert code(helper) == textwrap.dedent(
        """\
        # Copied from pkg.mod.Pipe.prepare_latents with self->components
        @staticmethod
        def prepare_latents(components, batch_size, latents=None):
            latents = latents * components.scheduler.init_noise_sigma
            return MyStep.encode_prompt(components, latents)
        """
    )
    assert list(used["helper"]) == ["encode_prompt"]


def test_feature_gate_raises_where_the_input_is_used_and_prunes_later_branches():
    body = statements(
        """\
        if image is not None or embeds is not None:
            image_embeds = self.prepare_image_embeds(image, embeds, self.do_cfg)
        added = {"image_embeds": image_embeds} if (image is not None or embeds is not None) else None
        if image is not None or embeds is not None:
            extra = 1
        else:
            extra = 0
        """
    )
    gate = FeatureGate(body[0], "prepare_image_embeds", ("image", "embeds"), "`image` / `embeds` are not served")
    rewritten = rewrite_statements(body, gate_replacements(gate, NodeIndex(body)))
    assert render(rewritten) == textwrap.dedent(
        """\
        if image is not None or embeds is not None:
            raise ValueError('`image` / `embeds` are not served')
        added = None
        extra = 0
        """
    )


def test_a_feature_gate_also_decides_later_tests_its_guard_implies():
    """Past `if image or embeds: raise`, a test on `image` alone (or on `embeds or image`, or `image and x`) is false
    too; a test on another input is left alone."""
    body = statements(
        """\
        if image is not None or embeds is not None:
            image_embeds = self.prepare_image_embeds(image, embeds, self.do_cfg)
        added = {"image_embeds": image_embeds} if image is not None else None
        if embeds is not None or image is not None:
            extra = 1
        if image is not None and strength > 0:
            extra = 2
        if strength > 0 or image is not None:
            extra = 3
        """
    )
    gate = FeatureGate(body[0], "prepare_image_embeds", ("image", "embeds"), "not served")
    rewritten = rewrite_statements(body, gate_replacements(gate, NodeIndex(body)))
    assert render(rewritten) == textwrap.dedent(
        """\
        if image is not None or embeds is not None:
            raise ValueError('not served')
        added = None
        if strength > 0 or image is not None:
            extra = 3
        """
    )


def test_same_expression_ignores_parentheses_and_layout():
    a = cst.parse_expression("(a is not None\n or b is not None)")
    b = cst.parse_expression("a is not None or b is not None")
    assert same_expression(a, b)
    assert not same_expression(a, cst.parse_expression("a is None or b is not None"))


def _import_in(text: str, module_name: str | None):
    source = parse_source(text, "p.py", module_name=module_name)
    return source.tree.body[-1].body[0], source


def test_relative_imports_resolve_against_the_source_module_and_back_for_in_tree():
    module = "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion"
    assert absolute_module(*_import_in("from ...models import AutoencoderKL\n", module)) == "diffusers.models"
    assert (
        absolute_module(*_import_in("from .safety_checker import Checker\n", module))
        == "diffusers.pipelines.stable_diffusion.safety_checker"
    )
    in_tree = "diffusers.modular_pipelines.modular_sd.encoders"
    assert relative_module("diffusers.models", in_tree) == (3, "models")
    assert relative_module("diffusers.modular_pipelines.modular_pipeline", in_tree) == (2, "modular_pipeline")
    assert code(import_from("diffusers.models", [("AutoencoderKL", None)], in_tree)) == (
        "from ...models import AutoencoderKL\n"
    )


def test_relative_import_outside_a_package_is_refused_at_its_line():
    with pytest.raises(ConversionError, match="relative import") as refused:
        absolute_module(*_import_in("import torch\n\nfrom .helpers import thing\n", None))
    assert (refused.value.location.path, refused.value.location.line) == ("p.py", 3)


def test_copied_module_statements_lose_imports_their_new_file_does_not_use():
    (statement,) = statements(
        """\
        if is_torch_xla_available():
            import torch_xla.core.xla_model as xm

            XLA_AVAILABLE = True
        else:
            XLA_AVAILABLE = False
        """
    )
    pruned = prune_unused_imports(statement, {"XLA_AVAILABLE"})
    assert "import torch_xla" not in code(pruned)
    assert "XLA_AVAILABLE = True" in code(pruned)
    assert "import torch_xla" in code(prune_unused_imports(statement, {"XLA_AVAILABLE", "xm"}))


def test_an_early_return_becomes_its_outputs_and_the_code_it_skipped_moves_to_the_other_branch():
    body = statements(
        """\
        if not output_type == "latent":
            image = self.vae.decode(latents)
        else:
            if not return_dict:
                return (latents,)
            return Output(images=latents)
        image = self.image_processor.postprocess(image)
        return Output(images=image)
        """
    )
    lowered = lower_early_return(body, {"images": "image"})
    assert render(lowered.statements) == textwrap.dedent(
        """\
        if not output_type == "latent":
            image = self.vae.decode(latents)
            image = self.image_processor.postprocess(image)
            return Output(images=image)
        else:
            if not return_dict:
                return (latents,)
            image = latents
        """
    )
    assert lowered.old is body[0] and len(lowered.handled) == 2  # the tuple return is dropped like any return
    assert lower_early_return(lowered.statements, {"images": "image"}, lowered.handled) is None


def test_returns_of_the_final_values_are_not_early():
    body = statements(
        """\
        image = self.vae.decode(latents)
        if not return_dict:
            return (image, has_nsfw_concept)
        return Output(images=image, nsfw_content_detected=has_nsfw_concept)
        """
    )
    assert lower_early_return(body, {"images": "image", "nsfw_content_detected": "has_nsfw_concept"}) is None


@pytest.mark.parametrize(
    "text",
    [
        "if latent:\n    return Output(images=latents)\n    x = 1\nimage = decode(latents)\n",  # not at the end
        "for x in y:\n    return Output(images=latents)\nimage = decode(latents)\n",  # not in an `if`
        "if latent:\n    return Output(images=latents, extra=x)\nimage = decode(latents)\n",  # unknown field
    ],
)
def test_early_returns_that_cannot_be_lowered_are_located(text):
    problem = lower_early_return(statements(text), {"images": "image"})
    assert isinstance(problem, EarlyReturnProblem) and isinstance(problem.node, cst.Return)


def test_a_cache_context_block_is_narrowed_to_the_model_call_and_its_post_processing():
    from modularize.normalize.cache_scope import narrowed, wide_cache_scopes

    (branch,) = statements(
        """\
        if do_cfg:
            with current_model.cache_context("uncond"):
                noise_uncond = current_model(hidden_states=x)[0]
                noise_uncond = noise_uncond[:, :n]
                noise_pred = noise_uncond + scale * (noise_pred - noise_uncond)
        """
    )
    (block,) = wide_cache_scopes([branch])
    assert render(narrowed(block)) == textwrap.dedent(
        """\
        with current_model.cache_context("uncond"):
            noise_uncond = current_model(hidden_states=x)[0]
            noise_uncond = noise_uncond[:, :n]
        noise_pred = noise_uncond + scale * (noise_pred - noise_uncond)
        """
    )
    # a second model call stays in the block: it is what the cache context names
    (two_calls,) = statements(
        """\
        with model.cache_context("cond"):
            a = model(x)[0]
            b = model(y)[0]
        """
    )
    assert wide_cache_scopes([two_calls]) == []


def test_an_assignment_repeating_an_earlier_one_is_found_and_nothing_else():
    from modularize.normalize.repeated_assignment import repeated_assignments

    body = statements(
        """\
        do_cfg = guidance_scale > 1.0
        device = self._execution_device
        for t in timesteps:
            do_cfg = guidance_scale > 1.0
            device = self._execution_device
            scale = guidance_scale * 2
        scale = guidance_scale * 2
        """
    )
    loop = body[2]
    # `device` reads an attribute (state that may change); `scale`'s repeat comes before the top-level one
    assert repeated_assignments(body) == [loop.body.body[0]]
    changed = statements(
        "do_cfg = guidance_scale > 1.0\nguidance_scale = 1.0\nfor t in ts:\n    do_cfg = guidance_scale > 1.0\n"
    )
    assert repeated_assignments(changed) == []  # what it reads is written in between


def test_rewrite_statements_replaces_prunes_what_it_emptied_and_rebuilds_only_the_paths_to_replacements():
    statements = list(
        cst.parse_module(
            "a = 1\nif flag:\n    x = 2\nelse:\n    y = 3\nfor i in range(2):\n    z = i\nif other:\n    w = 4\n"
        ).body
    )
    assign, branch, loop, kept = statements
    drop_x = branch.body.body[0]
    drop_z = loop.body.body[0]
    replaced = {
        drop_x: cst.RemoveFromParent(),  # the `if` keeps its `else` behind `pass`
        drop_z: cst.RemoveFromParent(),  # the emptied loop goes
        assign.body[0].value: cst.Integer("5"),
    }
    result = rewrite_statements(statements, replaced)
    assert cst.Module(body=result).code == "a = 5\nif flag:\n    pass\nelse:\n    y = 3\nif other:\n    w = 4\n"
    assert result[-1] is kept  # off every path to a replacement: the same node
    assert result[1].orelse is branch.orelse
    assert rewrite_statements(statements, {}) == statements


def test_a_replacement_keeping_its_node_keeps_the_replacements_inside_it():
    (line,) = cst.parse_module("x = f(1)\n").body
    after = cst.parse_statement("y = 2\n")
    one = line.body[0].value.args[0].value
    result = rewrite_statements([line], {line: cst.FlattenSentinel([line, after]), one: cst.Integer("3")})
    assert cst.Module(body=result).code == "x = f(3)\ny = 2\n"


_FREE_NOISE = (
    "if self.free_noise_enabled:\n    embeds = self._encode_free_noise(prompt, self.do_classifier_free_guidance)\n"
)


@pytest.mark.parametrize(
    ("orelse", "after"),
    [
        ("else:\n    embeds = self.encode(prompt)\n", "embeds = self.encode(prompt)\n"),
        ("elif lite:\n    embeds = self.encode(prompt)\n", "if lite:\n    embeds = self.encode(prompt)\n"),
        ("", ""),
    ],
)
def test_a_branch_calling_a_helper_outside_the_file_with_the_cfg_flag_raises_and_its_else_side_follows(orelse, after):
    from modularize.normalize.outside_helper_gate import HelperOutsideTheFile, with_branch_raising

    body = statements(_FREE_NOISE + orelse + "latents = embeds * 2\n")
    found = HelperOutsideTheFile(body[0], "_encode_free_noise", "VideoPipeline")
    new_body, origins = with_branch_raising(body, found)
    assert render(new_body) == (
        f"if self.free_noise_enabled:\n    raise ValueError({found.message!r})\n{after}latents = embeds * 2\n"
    )
    assert origins[new_body[0]] is body[0]  # errors and notes point at the source's `if`
    assert "VideoPipeline._encode_free_noise, defined outside the pipeline's file" in found.message


REDERIVING = """\
from diffusers import DiffusionPipeline


class RederivingPipeline(DiffusionPipeline):
    def __init__(self, vae, unet):
        super().__init__()
        self.register_modules(vae=vae, unet=unet)
        self.vae_scale_factor = 2 ** len(self.vae.config.block_out_channels) if getattr(self, "vae", None) else 8

    def encode(self, image):
        self.vae_scale_factor = 2 ** len(self.vae.config.block_out_channels)
        return self.vae.encode(image)

    def __call__(self, image, steps=2):
        if image is not None:
            self.vae_scale_factor = 2 ** len(self.vae.config.block_out_channels)
        latents = self.encode(image)
        for t in range(steps):
            latents = self.unet(latents, t)
        return latents
"""


def test_a_derived_attribute_derived_again_as_init_derives_it_with_its_components_is_dropped():
    from modularize.analysis.rewrite_context import call_body
    from modularize.frontend.class_facts import analyze_class
    from modularize.frontend.parse import find_pipeline_class, parse_source
    from modularize.normalize.rederived_attributes import without_rederived_attributes

    source = parse_source(REDERIVING, "rederiving.py")
    facts = analyze_class(source, find_pipeline_class(source))
    assert facts.kept_attributes == ("vae_scale_factor",)
    facts, body, origins, dropped = without_rederived_attributes(facts, call_body(facts))
    assert [code(line).strip() for line in dropped] == [
        "self.vae_scale_factor = 2 ** len(self.vae.config.block_out_channels)"
    ] * 2
    assert render(body).startswith("latents = self.encode(image)\n")  # (the `if` it emptied goes too)
    assert "vae_scale_factor" not in code(facts.methods["encode"]) and facts.kept_attributes == ()
    assert all(old is not None for old in origins.values())
