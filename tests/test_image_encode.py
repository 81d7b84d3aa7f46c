"""The VAE encode of the input image becomes its own `vae_encoder` block, and pre-encoded latents can replace it."""

from __future__ import annotations

import numpy as np
import pytest

from modularize.cli import main
from modularize.convert import ConvertOptions, plan_for
from modularize.frontend.parse import code
from modularize.frontend.source_file import installed_diffusers_file, module_name_of
from modularize.planning.plan import BlockPlan

IMG2IMG = "pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.py"
INPAINT = "pipelines/stable_diffusion/pipeline_stable_diffusion_inpaint.py"
CALL_SITE = "        # 6. Prepare latent variables\n        latents = self.prepare_latents(\n"


def plan_of(relative: str, text: str | None = None):
    path = installed_diffusers_file(relative)
    options = ConvertOptions(path=str(path), module_name=module_name_of(path))
    return plan_for(text if text is not None else path.read_text(), options)


def block(plan, key) -> BlockPlan:
    return next(b for b in plan.blocks if b.key == key)


def helper(block_plan: BlockPlan, name: str) -> str:
    return code(next(h.function for h in block_plan.helpers if h.name == name))


def test_img2img_encodes_the_image_in_a_block_of_its_own():
    plan = plan_of(IMG2IMG)
    keys = [b.key for b in plan.blocks]
    assert keys.index("vae_encoder") == keys.index("prepare_latent_variables") - 1  # where the encode ran
    encoder, latents = block(plan, "vae_encoder"), block(plan, "prepare_latent_variables")
    assert encoder.file == "encoders.py"
    assert [o.name for o in encoder.outputs] == ["image_latents"]
    assert "image" in [p.name for p in encoder.inputs]
    assert ("image_latents", "vae_encoder") in [(p.name, p.producer) for p in latents.inputs]
    assert "image" not in [p.name for p in latents.inputs] and "vae" not in latents.components

    encode = helper(encoder, "prepare_latents_vae_encode")
    assert "# Split from " in encode and "(its VAE encode)" in encode
    assert "components.vae.encode(image)" in encode and encode.rstrip().endswith("return init_latents")
    assert "add_noise" not in encode
    rest = helper(latents, "prepare_latents")
    assert "*, init_latents)" in rest
    function = next(h.function for h in latents.helpers if h.name == "prepare_latents")
    assert "image" not in [p.name.value for p in function.params.params]
    assert "batch_size = batch_size * num_images_per_prompt" in rest  # recomputed: the rest reads it
    assert ".encode(" not in rest and "add_noise(init_latents, noise, timestep)" in rest
    notes = [n for n in plan.notes if n.what == "`prepare_latents`"]
    assert notes and "split in two" in notes[0].why and notes[0].line > 0


def test_inpainting_keeps_the_condition_under_which_the_image_is_encoded():
    plan = plan_of(INPAINT)
    encoder = block(plan, "vae_encoder")
    assert [o.name for o in encoder.outputs] == ["image_latents"]
    encode = helper(encoder, "prepare_latents_vae_encode")
    # encoded only when the standard pipeline encodes it (a 4-channel UNet, or strength < 1): same random numbers
    assert "if return_image_latents or (latents is None and not is_strength_max):" in encode
    assert "image_latents = None" in encode and "shape = (" not in encode  # dead for the encode
    # `return_image_latents` is computed before the call: recomputed in the encoder block, kept in its own
    assert any("return_image_latents = num_channels_unet == 4" in code(s) for s in encoder.body)
    assert any(
        "return_image_latents = num_channels_unet == 4" in code(s)
        for s in block(plan, "prepare_latent_variables").body
    )


def test_a_split_that_cannot_be_proven_safe_keeps_the_helper_whole():
    text = installed_diffusers_file(IMG2IMG).read_text()
    assert CALL_SITE in text
    inserted = "        noise_probe = torch.randn(1, generator=generator)\n"  # consumes random numbers first
    text = text.replace(CALL_SITE, CALL_SITE.replace("        latents =", inserted + "        latents ="))
    plan = plan_of(IMG2IMG, text)
    assert "vae_encoder" not in [b.key for b in plan.blocks]
    kept = [n for n in plan.notes if n.action == "kept" and "VAE encode" in n.what]
    assert kept and "would run after the VAE encode" in kept[0].why and kept[0].line > 0


def test_a_helper_called_twice_is_not_split():
    text = installed_diffusers_file(IMG2IMG).read_text()
    probe = "        # 7. Prepare extra step kwargs."
    assert probe in text
    text = text.replace(probe, "        _ = self.prepare_latents\n" + probe)
    plan = plan_of(IMG2IMG, text)
    assert "vae_encoder" in [b.key for b in plan.blocks]  # a reference is not a call
    text = text.replace(
        "        _ = self.prepare_latents\n",
        "        _ = self.prepare_latents(image, latent_timestep, 1, 1, None, device)\n",
    )
    plan = plan_of(IMG2IMG, text)
    assert "vae_encoder" not in [b.key for b in plan.blocks]
    assert any("called 2 times" in n.why for n in plan.notes if n.action == "kept")


@pytest.mark.slow
def test_pre_encoded_image_latents_replace_the_encoder_block(tmp_path):
    import torch

    from modularize.testing.equivalence import load_package, package_classes
    from modularize.testing.tiny import setup_for

    out = tmp_path / "modular_img2img"
    assert main([str(installed_diffusers_file(IMG2IMG)), "-o", str(out), "-q"]) == 0
    pipeline_cls, blocks_cls = package_classes(load_package(out))
    setup = setup_for("StableDiffusionImg2ImgPipeline")
    torch.set_num_threads(1)
    components = setup.components()

    def pipeline(blocks):
        pipe = pipeline_cls(blocks=blocks)
        pipe.update_components(**{k: v for k, v in components.items() if k in pipe._component_specs})
        pipe.set_progress_bar_config(disable=True)
        return pipe

    full = pipeline(blocks_cls())
    kwargs = full.translate_standard_call(**setup.inputs(), strength=0.6, num_images_per_prompt=2)
    expected = full(**kwargs, generator=torch.Generator("cpu").manual_seed(0)).get("images")

    blocks = blocks_cls()
    blocks.sub_blocks.pop("vae_encoder")
    blocks.sub_blocks.pop("preprocess_image")  # the image is read by nothing else
    assert "image_latents" in [p.name for p in blocks.inputs] and "image" not in [p.name for p in blocks.inputs]
    generator = torch.Generator("cpu").manual_seed(0)
    vae = components["vae"]
    with torch.no_grad():  # what a user holding the image does: encode it with the same generator, first
        image = full.image_processor.preprocess(kwargs.pop("image"))
        image_latents = vae.encode(image).latent_dist.sample(generator=generator) * vae.config.scaling_factor
    got = pipeline(blocks)(**kwargs, image_latents=image_latents, generator=generator).get("images")
    assert len(got) == 2
    assert np.array_equal(np.asarray(expected), np.asarray(got))
