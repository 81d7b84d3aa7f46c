"""LongCat-Image's tiny components: the transformer reads the Qwen2.5-VL states and the VAE's 16-channel latents
packed 2 x 2; its output depends on the prompt and the timestep; both standard pipelines run on the by-class setup."""

from __future__ import annotations

import pytest
import torch

from modularize.testing.components import DIMS

from .conftest import pipeline_by_class as _pipeline

PIPELINES = ("LongCatImagePipeline", "LongCatImageEditPipeline")


def _cls(name: str):
    import diffusers

    return getattr(diffusers, name)


@pytest.mark.parametrize("name", PIPELINES)
def test_longcat_image_components_are_coupled(name):
    pipe = _pipeline(name)
    transformer, qwen, vae = pipe.transformer, pipe.text_encoder, pipe.vae
    # the pipelines make 16-channel latents whatever the VAE, packed 2 x 2
    assert vae.config.latent_channels == 16
    assert transformer.config.in_channels == 4 * vae.config.latent_channels
    assert transformer.config.joint_attention_dim == qwen.config.text_config.hidden_size
    assert sum(transformer.config.axes_dims_rope) == transformer.config.attention_head_dim == DIMS.head_dim
    assert len(pipe.tokenizer) == qwen.config.text_config.vocab_size
    assert len(pipe.text_processor.tokenizer) == len(pipe.tokenizer)
    # the editing pipeline renders ~1 megapixel whatever it is given: its VAE compresses 32x
    assert pipe.vae_scale_factor == (32 if name == "LongCatImageEditPipeline" else DIMS.vae_scale_factor)


def test_longcat_image_transformer_depends_on_its_inputs():
    transformer = _pipeline("LongCatImagePipeline").transformer
    patches, tokens = 16, 5
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, patches, transformer.config.in_channels, generator=generator).repeat(2, 1, 1)
    text = torch.randn(2, tokens, transformer.config.joint_attention_dim, generator=generator)
    txt_ids = torch.zeros(tokens, 3)
    txt_ids[:, 1] = txt_ids[:, 2] = torch.arange(tokens)
    img_ids = torch.stack(
        torch.meshgrid(torch.ones(1), torch.arange(4.0) + tokens, torch.arange(4.0) + tokens, indexing="ij"), -1
    ).reshape(patches, 3)

    def predict(text, timestep):
        with torch.no_grad():
            return transformer(
                hidden_states=latents, encoder_hidden_states=text, timestep=timestep, img_ids=img_ids, txt_ids=txt_ids
            ).sample

    prediction = predict(text, torch.tensor([0.9, 0.9]))
    assert prediction.shape == latents.shape
    assert torch.isfinite(prediction).all() and prediction.std() > 0
    # the same latents give a different prediction for another prompt, and at another timestep
    assert not torch.equal(prediction[0], prediction[1])
    assert not torch.equal(prediction, predict(text, torch.tensor([0.1, 0.1])))


def _run(pipe, **inputs):
    return pipe(**inputs, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images


@pytest.mark.slow
def test_longcat_image_text_to_image_runs():
    import numpy as np

    pipe = _pipeline("LongCatImagePipeline")
    size = DIMS.image_size
    images = [
        _run(pipe, prompt=prompt, height=size, width=size, enable_prompt_rewrite=False)
        for prompt in ("a photo of a cat", "the dog and the moon")
    ]
    assert images[0].shape == (1, size, size, 3)
    # the same noise: the prompts alone make the images differ
    assert np.isfinite(images[0]).all() and not np.array_equal(images[0], images[1])


@pytest.mark.slow
def test_longcat_image_edit_runs():
    import numpy as np

    from modularize.testing.tiny_parts import tiny_image

    pipe = _pipeline("LongCatImageEditPipeline")
    image = tiny_image(DIMS.image_size)
    edits = [_run(pipe, image=image, prompt=prompt) for prompt in ("a photo of a cat", "the dog and the moon")]
    assert edits[0].shape == (1, 1024, 1024, 3)
    assert np.isfinite(edits[0]).all() and not np.array_equal(edits[0], edits[1])
    # ... and the image: its mirror gives another edit of the same prompt
    mirrored = _run(pipe, image=image.transpose(0), prompt="a photo of a cat")
    assert not np.array_equal(edits[0], mirrored)


@pytest.mark.slow
@pytest.mark.parametrize("name", PIPELINES)
def test_longcat_image_by_class_matrix_runs(name):
    from modularize.testing.equivalence import components_by_class

    cls = _cls(name)
    setup = components_by_class(cls)
    pipe = cls(**setup.components())
    pipe.set_progress_bar_config(disable=True)
    for case, overrides in (("default", {}), *setup.cases):
        output = pipe(**{**setup.inputs(), **overrides}).images
        assert output is not None, case
