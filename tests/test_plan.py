"""The conversion plan for the installed StableDiffusionPipeline and for the toy fixture, and located refusals."""

import json

import libcst as cst
import pytest

from modularize.convert import ConvertOptions, plan_for
from modularize.errors import ConversionError
from modularize.planning.plan import BlockPlan, LoopPlan

from .conftest import FIXTURES, TOY


@pytest.fixture(scope="module")
def sd_plan(sd_source):
    options = ConvertOptions(
        path=str(sd_source),
        label="diffusers/" + str(sd_source).split("diffusers/", 1)[1],
        module_name="diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion",
    )
    return plan_for(sd_source.read_text(), options)


def block(plan, key):
    return next(b for b in plan.blocks if b.key == key)


def names(params):
    return [p.name for p in params]


def test_stages_become_blocks_in_source_order_and_files_by_kind(sd_plan):
    assert [(b.key, b.file) for b in sd_plan.blocks] == [
        ("default_height_and_width_unet", "before_denoise.py"),
        ("check_inputs", "before_denoise.py"),
        ("define_call_parameters", "before_denoise.py"),
        ("encode_input_prompt", "encoders.py"),
        ("prepare_timesteps", "before_denoise.py"),
        ("prepare_latent_variables", "before_denoise.py"),
        ("prepare_extra_step_kwargs", "before_denoise.py"),
        ("add_image_embeds_for_ip_adapter", "before_denoise.py"),
        ("optionally_get_guidance_scale_embedding", "before_denoise.py"),
        ("denoise", "denoise.py"),
        ("decode", "decoders.py"),
    ]
    assert block(sd_plan, "prepare_timesteps").label == "4. Prepare timesteps"


def test_block_inputs_and_outputs_come_from_def_use(sd_plan):
    encode = block(sd_plan, "encode_input_prompt")
    # (the IP-Adapter's image embeddings too, split where the helper returns them doubled: a guider field)
    assert names(encode.outputs) == [
        "prompt_embeds",
        "negative_prompt_embeds",
        "image_embeds",
        "negative_image_embeds",
    ]
    assert {"prompt", "negative_prompt", "num_images_per_prompt", "clip_skip", "device"} <= set(names(encode.inputs))
    device = next(p for p in encode.inputs if p.name == "device")
    assert device.producer == "define_call_parameters"
    heights = block(sd_plan, "default_height_and_width_unet")
    assert names(heights.inputs) == ["height", "width"] and names(heights.outputs) == ["height", "width"]
    timesteps = block(sd_plan, "prepare_timesteps")
    assert names(timesteps.outputs) == ["timesteps", "num_inference_steps"]
    decode = block(sd_plan, "decode")
    assert [(o.name, o.local) for o in decode.outputs] == [
        ("images", "image"),
        ("nsfw_content_detected", "has_nsfw_concept"),
    ]
    latents_input = next(p for p in decode.inputs if p.name == "latents")
    assert latents_input.producer == "denoise"


def test_call_arguments_keep_default_type_hint_and_docstring_description(sd_plan):
    steps = next(p for p in block(sd_plan, "prepare_timesteps").inputs if p.name == "num_inference_steps")
    assert (steps.type_hint, steps.default) == ("int", "50")
    assert steps.description.startswith("The number of denoising steps.")
    prompt = next(p for p in sd_plan.call_arguments if p.name == "prompt")
    assert prompt.type_hint == "str | list[str]" and prompt.default == "None"


def test_helpers_go_to_the_blocks_that_call_them(sd_plan):
    assert [h.name for h in block(sd_plan, "encode_input_prompt").helpers] == [
        "encode_image",
        "encode_prompt",
        "prepare_ip_adapter_image_embeds",
    ]
    assert [h.name for h in block(sd_plan, "prepare_latent_variables").helpers] == ["prepare_latents"]
    assert [h.name for h in block(sd_plan, "decode").helpers] == ["run_safety_checker"]
    helper = block(sd_plan, "prepare_latent_variables").helpers[0]
    assert helper.origin.endswith("StableDiffusionPipeline.prepare_latents")


def test_components_are_typed_from_init_and_unused_ones_dropped(sd_plan):
    assert [(c.name, c.type_hint) for c in sd_plan.components] == [
        ("vae", "AutoencoderKL"),
        ("text_encoder", "CLIPTextModel"),
        ("tokenizer", "CLIPTokenizer"),
        ("unet", "UNet2DConditionModel"),
        ("scheduler", "KarrasDiffusionSchedulers"),
        ("safety_checker", "StableDiffusionSafetyChecker"),
        ("feature_extractor", "CLIPImageProcessor"),
        ("image_encoder", "CLIPVisionModelWithProjection"),  # the IP-Adapter's
    ]
    assert not any(n.what.startswith("component `") for n in sd_plan.notes)  # none unused
    assert block(sd_plan, "prepare_latent_variables").components == ("vae", "unet", "scheduler")


def test_batched_cfg_is_found_with_the_standard_pipelines_own_condition(sd_plan):
    guidance = sd_plan.guidance
    assert guidance.pattern == "batched-cfg"
    assert guidance.denoiser == "unet"
    assert [(f.name, f.cond, f.uncond, f.layers) for f in guidance.fields] == [
        ("prompt_embeds", "prompt_embeds", "negative_prompt_embeds", False),
        # the IP-Adapter's embeddings, one batched tensor per adapter: merged adapter by adapter
        ("added_cond_kwargs", "added_cond_kwargs", "negative_added_cond_kwargs", True),
    ]
    assert guidance.repeated == ("latent_model_input",)
    assert guidance.condition == "guidance_scale > 1 and self.unet.config.time_cond_proj_dim is None"
    assert guidance.rescale_condition == "do_classifier_free_guidance and guidance_rescale > 0.0"
    assert [p.name for p in guidance.arguments] == ["guidance_scale", "guidance_rescale"]
    assert guidance.batch_order == ("pred_uncond", "pred_cond")
    # guidance_scale also stays a block input: the guidance-scale embedding reads it
    assert "guidance_scale" in sd_plan.block_arguments and "guidance_rescale" not in sd_plan.block_arguments


def test_the_loop_splits_into_three_steps_around_the_denoiser(sd_plan):
    loop = block(sd_plan, "denoise")
    assert isinstance(loop, LoopPlan)
    assert [s.key for s in loop.steps] == ["before_denoiser", "denoiser", "after_denoiser"]
    before, denoiser, after = loop.steps
    assert names(before.inputs) == ["latents"] and before.carried_out == ("latent_model_input",)
    assert {"prompt_embeds", "negative_prompt_embeds", "timestep_cond"} <= set(names(denoiser.inputs))
    assert set(denoiser.guided) == {
        "prompt_embeds",
        "negative_prompt_embeds",
        "latent_model_input",
        "added_cond_kwargs",
        "negative_added_cond_kwargs",
    }
    assert after.carried_out == ("latents",) and names(after.outputs) == ["latents"]
    assert loop.loop_targets == ("i", "t")


def test_everything_dropped_or_gated_is_reported(sd_plan):
    by_action = {}
    for note in sd_plan.notes:
        by_action.setdefault(note.action, []).append(note)
    dropped = " ".join(n.what for n in by_action["dropped"])
    for expected in ("callback_steps", "self.interrupt", "maybe_free_model_hooks", "return"):
        assert expected in dropped
    assert "xm.mark_step()" not in dropped  # kept in the loop, as in diffusers' own modular loops
    assert "raises" not in by_action  # the IP-Adapter inputs are served
    assert all(n.line > 0 for n in by_action["rewritten"])
    # the deprecated callback raises unless left out; how often it would run changes nothing without it
    assert dict(sd_plan.unserved_arguments)["callback"] == "None"
    assert "callback_steps" in sd_plan.ignored_arguments


def test_plan_command_prints_text_and_json(cli, sd_source):
    text = cli("plan", sd_source)
    assert text.code == 0
    assert (
        "guidance: batched-cfg" in text.out and "encode_input_prompt: StableDiffusionEncodeInputPromptStep" in text.out
    )
    data = json.loads(cli("plan", sd_source, "--json").out)
    assert data["guidance"]["fields"] == {
        "prompt_embeds": ["prompt_embeds", "negative_prompt_embeds"],
        "added_cond_kwargs": ["added_cond_kwargs", "negative_added_cond_kwargs"],
    }
    assert data["blocks"][-1]["name"] == "decode"


def toy_variant(old: str, new: str) -> str:
    text = TOY.read_text()
    assert old in text
    return text.replace(old, new)


def toy_plan(text: str):
    return plan_for(text, ConvertOptions(path="pipeline_toy.py"))


def test_the_toy_pipeline_converts_through_the_same_mechanisms():
    plan = toy_plan(TOY.read_text())
    assert [b.key for b in plan.blocks] == [
        "define_call_parameters",
        "encode_prompts",
        "prepare_timesteps",
        "prepare_latents",
        "denoise",
        "decode",
    ]
    encode = plan.blocks[1]
    assert isinstance(encode, BlockPlan)
    # the negative embeddings are only computed under CFG: no incoming value, so they start out as None
    assert encode.unbound_outputs == ("negative_embeddings",)
    assert plan.guidance.condition == "guidance_scale > 1.0"
    assert plan.unserved_arguments == ()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "torch.cat([negative_embeddings, text_embeddings])",
            "torch.cat([text_embeddings, negative_embeddings])",
            "opposite order",
        ),
        (
            "noise_uncond + self.guidance_scale * (noise_text - noise_uncond)",
            "noise_text + self.guidance_scale * (noise_text - noise_uncond)",
            "unrecognized guidance combine",
        ),
        (
            "        # 3. Prepare timesteps\n",
            "        rows = text_embeddings.shape[0]\n        # 3. Prepare timesteps\n",
            "read with its CFG-doubled batch",
        ),
    ],
)
def test_unsupported_guidance_is_refused_with_its_location(old, new, message):
    with pytest.raises(ConversionError, match=message) as error:
        toy_plan(toy_variant(old, new))
    assert error.value.location.line > 0


def test_source_variables_named_like_block_internals_are_renamed_and_arguments_refused():
    from modularize.convert import convert

    text = toy_variant("        device = self._execution_device\n", "        state = self._execution_device\n")
    text = text.replace("device=device", "device=state")
    text = text.replace("(prompts, device)", "(prompts, state)").replace("(negatives, device)", "(negatives, state)")
    files = convert(text, ConvertOptions(path="pipeline_toy.py"))
    generated = "".join(files.values())
    assert "state_ = components._execution_device" in generated and "device=state_" in generated
    assert not any(line.strip().startswith("state = ") for line in generated.splitlines())  # blocks' own `state`
    # an argument is the pipeline's interface: refused, not renamed
    argument = toy_variant("        num_inference_steps", "        state=None,\n        num_inference_steps")
    with pytest.raises(ConversionError, match="has an argument named `state`"):
        toy_plan(argument)
    # a function inside `__call__` binding the name too: renaming the local would rename its parameter's reads
    nested = text.replace(
        "        state = self._execution_device\n",
        "        state = self._execution_device\n        pick = lambda state: state\n",
        1,
    )
    with pytest.raises(ConversionError, match="assigns `state`, a name generated blocks use"):
        toy_plan(nested)
    # ... or an import binding it: the imported name is the module's own
    imported = text.replace("        state = self._execution_device\n", "        from os import sep as state\n", 1)
    with pytest.raises(ConversionError, match="assigns `state`, a name generated blocks use"):
        toy_plan(imported)


def test_separate_cfg_passes_are_refused_at_the_second_call():
    path = FIXTURES / "bad" / "pipeline_separate_passes.py"
    with pytest.raises(ConversionError, match="more than once per step") as error:
        plan_for(path.read_text(), ConvertOptions(path=str(path)))
    assert error.value.location.line == 23  # the second model call of the step


def test_a_name_set_on_some_paths_and_read_in_the_same_stage_is_left_as_the_source_has_it():
    # `if ...: scale = 2.0` then a read below: the source fails there when the branch is not taken, and so does the
    # verbatim block; nothing outside the stage defines it, so it is neither an input nor bound to a default
    text = toy_variant(
        "        text_embeddings = self.embed_text(prompts, device)\n",
        "        if num_inference_steps > 0:\n"
        "            scale = 1.0\n"
        "        text_embeddings = self.embed_text(prompts, device) * scale\n",
    )
    encode = block(toy_plan(text), "encode_prompts")
    assert "scale" not in names(encode.inputs) and "scale" not in encode.unbound_outputs
    assert "scale" not in [o.name for o in encode.outputs]


def test_a_loop_over_timesteps_that_never_steps_the_scheduler_is_an_ordinary_statement():
    # ControlNet pipelines compute `controlnet_keep` in a loop over timesteps before denoising
    text = toy_variant(
        "        # 4. Prepare latents\n",
        "        keep = []\n        for i in range(len(timesteps)):\n            keep.append(1.0)\n\n"
        "        # 4. Prepare latents\n",
    )
    text = text.replace("self.scheduler.step(noise_pred, t", "self.scheduler.step(noise_pred * keep[i], t")
    plan = toy_plan(text)
    assert [b.key for b in plan.blocks][2:5] == ["prepare_timesteps", "prepare_latents", "denoise"]
    assert "keep" in [o.name for o in block(plan, "prepare_timesteps").outputs]


def test_a_loop_around_the_denoising_loop_stays_verbatim_in_the_loop_wrapper():
    """An outer loop (FreeInit's iterations, an ensemble's members) is the wrapper's: it runs the steps once per
    outer iteration (the golden case `outer_loop/renoised_rounds` runs one and compares it bitwise)."""
    text = TOY.read_text()
    start = text.index("        for i, t in enumerate(self.progress_bar(timesteps)):")
    end = text.index("        # 6. Decode")
    loop = "".join("    " + line if line.strip() else line for line in text[start:end].splitlines(keepends=True))
    text = text[:start] + "        for attempt in range(2):\n" + loop + text[end:]
    loop_plan = next(b for b in toy_plan(text).blocks if isinstance(b, LoopPlan))
    wrapper = cst.Module(body=list(loop_plan.wrapper_body)).code
    assert "for attempt in range(2):" in wrapper
    assert "self.loop_step(components, block_state" in wrapper.split("for attempt in range(2):")[1]
    assert [step.key for step in loop_plan.steps if step.body][-1] == "after_denoiser"


def test_a_derived_attribute_keeps_a_string_continued_over_lines_as_it_is():
    """`self.note = "a \\` + an indented next line in `__init__` becomes a property: the continuation line is part of
    the string's value, so it is not re-indented (HunyuanVideo 1.5's system message changed its prompt tokens)."""
    from pathlib import Path

    from modularize.convert import ConvertOptions, convert

    source = (Path(__file__).parent / "cases/batched_cfg/rescale/input.py").read_text()
    anchor = "        self.pixels_per_latent = "
    note = '        self.note = "first line \\\n        second line"\n'
    text = source.replace(anchor, note + anchor, 1).replace(
        "        batch_size = 1 if isinstance(prompt, str)",
        "        print(self.note)\n        batch_size = 1 if isinstance(prompt, str)",
        1,
    )
    files = convert(text, ConvertOptions(path="pipeline_note.py", label="pipeline_note.py"))
    pipeline = files["modular_pipeline.py"]
    assert '        return "first line \\\n        second line"\n' in pipeline


def _toy_with(init: str = "", call: str = "", methods: str = "") -> str:
    """The toy with lines added at the end of `__init__`, at the top of `__call__`'s stage 1, and methods."""
    text = TOY.read_text()
    anchor = "        self.latent_size = unet.config.sample_size if unet is not None else 16\n"
    text = text.replace(anchor, anchor + init, 1)
    text = text.replace("        # 1. Define call parameters\n", "        # 1. Define call parameters\n" + call, 1)
    return text.replace(
        "    def embed_text(self, texts, device):\n", methods + "    def embed_text(self, texts, device):\n", 1
    )


def test_a_value_the_pipeline_keeps_from_call_to_call_is_a_class_attribute_each_instance_shadows():
    """`self._warned = False` in `__init__`, set again by `__call__` (a warn-once flag, a cache): the generated
    pipeline has it as a class attribute, so the block's `components._warned = True` works as the source's does.
    One `__init__` computes from its arguments cannot be kept that way: refused where `__init__` sets it."""
    from modularize.convert import convert

    text = _toy_with(
        init="        self._warned = False\n",
        call="        if not self._warned:\n            self._warned = True\n",
    )
    files = convert(text, ConvertOptions(path="pipeline_toy.py"))
    assert "    _warned = False\n" in files["modular_pipeline.py"]
    assert "def _warned(self)" not in files["modular_pipeline.py"]
    computed = text.replace("self._warned = False\n", "self._warned = unet is None\n", 1)
    with pytest.raises(ConversionError, match="set up by `__init__` from its arguments and assigned again"):
        toy_plan(computed)


def test_a_helper_reached_through_the_pipelines_own_class_name_is_read_on_self():
    text = _toy_with(
        call="        prompt = ToyTextToImagePipeline.tidy(prompt)\n",
        methods="    @staticmethod\n    def tidy(prompt):\n        return prompt\n\n",
    )
    first = cst.Module(body=list(toy_plan(text).blocks[0].body)).code
    assert "self.tidy(components, prompt)" in first and "ToyTextToImagePipeline" not in first


def test_statements_after_the_denoising_loop_inside_its_with_run_in_the_wrapper_on_the_block_state():
    from modularize.analysis.segment import find_timestep_loop, runs_around

    statement = cst.parse_statement(
        "with self.progress_bar(total=n) as bar:\n"
        "    for i, t in enumerate(timesteps):\n"
        "        latents = self.scheduler.step(noise, t, latents)[0]\n"
        "    history = torch.cat([history, latents])\n"
    )
    loop = find_timestep_loop(statement)
    assert loop is statement.body.body[0] and runs_around(statement, loop)
    plain = cst.parse_statement(
        "with self.progress_bar(total=n) as bar:\n    for i, t in enumerate(timesteps):\n        x = self.scheduler.step(e, t, x)[0]\n"
    )
    assert not runs_around(plain, find_timestep_loop(plain))
    two = cst.parse_statement(
        "for k in range(2):\n"
        "    for t in timesteps:\n        x = self.scheduler.step(e, t, x)[0]\n"
        "    for t in timesteps:\n        x = self.scheduler.step(e, t, x)[0]\n"
    )
    assert find_timestep_loop(two) is None  # two denoising loops in one outer loop: which one is it


def test_a_progress_bar_of_the_pipelines_own_is_copied_onto_the_loop_wrapper():
    """Marigold defines `progress_bar(self, iterable, total, desc, leave)`: the wrapper calls the copy (the block's
    own progress bar takes no `desc`)."""
    text = _toy_with(
        methods=(
            "    def progress_bar(self, iterable=None, total=None, desc=None):\n"
            "        return tqdm(iterable, total=total, desc=desc)\n\n"
        )
    ).replace("enumerate(self.progress_bar(timesteps))", 'enumerate(self.progress_bar(timesteps, desc="steps"))')
    loop = next(b for b in toy_plan("from tqdm import tqdm\n" + text).blocks if isinstance(b, LoopPlan))
    assert [helper.name for helper in loop.helpers] == ["progress_bar"]
    assert 'self.progress_bar(components, timesteps, desc="steps")' in cst.Module(body=list(loop.wrapper_body)).code
