"""Building blocks of the tiny offline components: seeded construction, small configs shared by families."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TinySetup:
    """What `verify` needs for one standard pipeline class."""

    components: Callable[[], dict[str, Any]]  # keyword arguments of the standard pipeline's constructor
    inputs: Callable[[], dict[str, Any]]  # default call inputs (a generator is added per run)
    cases: tuple[tuple[str, dict[str, Any]], ...] = field(default=())  # the default matrix: (name, overrides)
    notes: tuple[str, ...] = field(default=())  # what the matrix leaves out, and why


def seeded(seed: int, build: Callable[[], Any]) -> Any:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def clip_text_config(tokenizer, hidden_size: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        projection_dim=32,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


# what the flow-matching pipelines' VAEs add to the plain one (SD3, Flux, Z-Image)
FLOW_VAE = {"shift_factor": 0.0609, "scaling_factor": 1.5035, "use_quant_conv": False, "use_post_quant_conv": False}


def tiny_vae(seed: int, latent_channels: int = 4, **config):
    """A 2-level `AutoencoderKL` on RGB; `config` adds constructor arguments (`**FLOW_VAE`)."""
    from diffusers import AutoencoderKL

    return seeded(
        seed,
        lambda: AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(32, 64),
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            latent_channels=latent_channels,
            norm_num_groups=32,
            **config,
        ).eval(),
    )


def tiny_t5(tokenizer, seed: int, d_model: int = 32, umt5: bool = False):
    """A 2-layer T5 encoder (UMT5's, for Wan, with `umt5`) sized to the tokenizer."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    config_cls, model_cls = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    config = config_cls(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_ff=37,
        d_kv=8,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return seeded(seed, lambda: model_cls(config).eval())


def tiny_image(size: int = 32):
    """A deterministic RGB test image: smooth gradients and a bright square, so every pixel is different."""
    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 255, size, dtype=np.float64)
    pixels = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size))], -1)
    pixels[size // 4 : size // 2, size // 4 : size // 2] = 240
    return Image.fromarray(pixels.astype(np.uint8))


def tiny_mask(size: int = 32):
    """A deterministic inpainting mask: the right half white (repaint), the left half black (keep)."""
    import numpy as np
    from PIL import Image

    pixels = np.zeros((size, size), dtype=np.uint8)
    pixels[:, size // 2 :] = 255
    return Image.fromarray(pixels, mode="L")
