"""Image-embedding models: priors that denoise a CLIP image embedding from a prompt's, and the normalizer that
noise-augments one. Every embedding is `dims.clip_projection` wide (the CLIP encoders' projection).

Shap-E's prior instead denoises the latent of a 3D asset: `SHAP_E_LATENT_WIDTH`-wide rows, one per weight vector
its renderer projects them to (the first layers of a `SHAP_E_HIDDEN`-wide NeRF MLP).
"""

from __future__ import annotations

import functools

from ..registry import Need, factory

SHAP_E_HIDDEN = 8  # the renderer's MLP width
SHAP_E_PROJECTED_LAYERS = 4  # the MLP layers whose weights the latent gives (the renderer's default names)
SHAP_E_LATENT_WIDTH = 16  # each row of a Shap-E latent


@functools.cache
def shap_e_param_shapes() -> tuple[tuple[int, int], ...]:
    """The weights the renderer's MLP takes from a latent, (out, in) each: the first layer reads the positional
    encoding of a 3D point, the next ones the hidden width. A latent has one row per output vector."""
    import torch
    from diffusers.pipelines.shap_e.renderer import encode_position

    position_features = encode_position(torch.eye(1, 3)).shape[-1]
    first = (SHAP_E_HIDDEN, position_features)
    return (first, *[(SHAP_E_HIDDEN, SHAP_E_HIDDEN)] * (SHAP_E_PROJECTED_LAYERS - 1))


def shap_e_latent_rows() -> int:
    return sum(vectors for vectors, _ in shap_e_param_shapes())


@factory("PriorTransformer")
def prior_transformer(need: Need):
    """A one-layer prior over CLIP image embeddings (unCLIP / Kandinsky): it reads the text encoder's projected
    embedding and its hidden states (`clip_projection` = `text_hidden` wide: one projection serves both) over the
    tokenizer's 77 positions. Its zero-initialized parameters (positions, the prediction token, the embedding
    statistics it un-normalizes with) are drawn from the seed instead: a zero `clip_std` would make every output 0,
    and zeros elsewhere would hide an input that is misused."""
    d = need.dims

    def build(**kwargs):
        import torch

        prior = need.cls(**kwargs)
        with torch.no_grad():
            prior.positional_embedding.normal_(std=0.02)
            if prior.prd_embedding is not None:
                prior.prd_embedding.normal_(std=0.02)
            prior.clip_mean.normal_(std=0.1)
            prior.clip_std.copy_(1 + 0.1 * torch.randn_like(prior.clip_std))
        return prior

    if need.has_class("ShapERenderer"):
        return need.model(build, **_shap_e_prior(need))
    return need.model(
        build,
        num_attention_heads=d.heads,
        attention_head_dim=d.head_dim,
        num_layers=d.layers,
        embedding_dim=d.clip_projection,
        num_embeddings=d.clip_max_length,
    )


def _shap_e_prior(need: Need) -> dict:
    """Shap-E's prior: it denoises all the latent's rows at once (no prediction token, no extra positions), and
    predicts twice their width (the pipeline keeps the first half); it is conditioned on the prompt's CLIP
    embedding (`clip_projection` wide) or, from an image, on the CLIP vision tower's patch states (`text_hidden`
    wide, normalized first)."""
    d = need.dims
    from_image = need.class_of("image_encoder") is not None
    return {
        "num_attention_heads": d.heads,
        "attention_head_dim": d.head_dim,
        "num_layers": d.layers,
        "embedding_dim": SHAP_E_LATENT_WIDTH,
        "num_embeddings": shap_e_latent_rows(),
        "embedding_proj_dim": d.text_hidden if from_image else d.clip_projection,
        "embedding_proj_norm_type": "layer" if from_image else None,
        "clip_embed_dim": 2 * SHAP_E_LATENT_WIDTH,
        "additional_embeddings": 0,
        "time_embed_act_fn": "gelu",
        "norm_in_type": "layer",
        "encoder_hid_proj_type": None,
        "added_emb_type": None,
    }


# Rendering samples points along a ray of every pixel of 20 views: the positional encoding of each point is most of
# the time (about 15 s for a 32-pixel frame at the default 64 + 128 samples). The tiny renderer samples fewer
# points, and renders rays in batches that divide the rays of any frame size divisible by 4 (the default batch of
# 4096 rays needs 32 pixels at least).
SHAP_E_COARSE_SAMPLES, SHAP_E_FINE_SAMPLES = 8, 16
SHAP_E_RAY_BATCH = 20 * 4 * 4


@functools.cache
def fewer_ray_samples(renderer_cls: type) -> type:
    """`renderer_cls` rendering images with `SHAP_E_COARSE_SAMPLES` + `SHAP_E_FINE_SAMPLES` points per ray, in
    batches of `SHAP_E_RAY_BATCH` rays (what the pipeline calls leaves these to the renderer's defaults)."""

    class FewerRaySamples(renderer_cls):
        def decode_to_image(
            self,
            latents,
            device,
            size: int = 64,
            ray_batch_size: int = SHAP_E_RAY_BATCH,
            n_coarse_samples: int = SHAP_E_COARSE_SAMPLES,
            n_fine_samples: int = SHAP_E_FINE_SAMPLES,
        ):
            return super().decode_to_image(latents, device, size, ray_batch_size, n_coarse_samples, n_fine_samples)

    FewerRaySamples.__name__ = FewerRaySamples.__qualname__ = renderer_cls.__name__
    return FewerRaySamples


@factory("ShapERenderer")
def shap_e_renderer(need: Need):
    """Renders a latent by projecting its rows to the weights of a `SHAP_E_HIDDEN`-wide NeRF MLP (sampling
    fewer points per ray: `fewer_ray_samples`)."""
    return need.model(
        fewer_ray_samples(need.cls),
        param_shapes=shap_e_param_shapes(),
        d_latent=SHAP_E_LATENT_WIDTH,
        d_hidden=SHAP_E_HIDDEN,
    )


@factory("StableUnCLIPImageNormalizer")
def stable_unclip_image_normalizer(need: Need):
    """The statistics of the CLIP image embeddings it normalizes before noising them: drawn from the seed (its
    zeros and ones would make scaling and unscaling the identity, hiding one that is skipped)."""

    def build(**kwargs):
        import torch

        normalizer = need.cls(**kwargs)
        with torch.no_grad():
            normalizer.mean.normal_(std=0.1)
            normalizer.std.copy_(1 + 0.1 * torch.randn_like(normalizer.std))
        return normalizer

    return need.model(build, embedding_dim=need.dims.clip_projection)
