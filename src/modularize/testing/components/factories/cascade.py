"""Stable Cascade and Würstchen: priors that denoise a small grid of image features (EfficientNet's, "image
embeddings") from a prompt, and decoders that denoise VQ latents conditioned on those features.

The prior's grid is `IMAGE_EMBEDDING_CHANNELS` deep and `ceil(size / resolution_multiple)` a side (the pipelines'
`resolution_multiple`, 42.67 by default); the decoder's latents are `PAELLA_LATENT_CHANNELS` deep (the pipelines
hard-code 4) and `latent_dim_scale` (10.67) times the features' grid a side. The couplings:

    Stable Cascade prior (`StableCascadeUNet`, named `prior`):
      CLIP text hidden states (batch, tokens, text_hidden)   --> `clip_text_in_channels`
      CLIP pooled text embedding (batch, 1, clip_projection)  --> `clip_text_pooled_in_channels`
      CLIP image embedding (batch, 1, clip_projection)        --> `clip_image_in_channels` (zeros without an image)
      image features (batch, IMAGE_EMBEDDING_CHANNELS, h, w)  --> `in_channels` / `out_channels`
    Stable Cascade decoder (`StableCascadeUNet`, named `decoder`):
      CLIP pooled text embedding (batch, 1, clip_projection)  --> `clip_text_pooled_in_channels`
      the prior's image features                             --> `effnet_in_channels`
      Paella VQ latents (batch, PAELLA_LATENT_CHANNELS, H, W)  --> `in_channels` / `out_channels`
    Würstchen prior (`WuerstchenPrior`):
      CLIP text hidden states (batch, tokens, text_hidden)   --> `c_cond`
      image features                                         --> `c_in` (it predicts them from twice as many)
    Würstchen decoder (`WuerstchenDiffNeXt`):
      CLIP text hidden states                                --> `clip_embd`
      the prior's image features                             --> `effnet_embd`
      Paella VQ latents                                      --> `c_in` / `c_out`

Both priors keep their grid's size (the Stable Cascade prior's level switch only maps channels, as the real one's
does: `switch_level=(False,)`), so any grid, even 1 x 1, runs; the decoders halve theirs per level (a 2-level net
needs an even grid). Their zero-initialized parameters (the response norms' gain and bias) are drawn from the seed,
so every block transforms its input; the Würstchen prior divides by `|1 - b|` for a predicted `b`, so its output
layer is drawn small (`b` near 0, no division by a number near 0).
"""

from __future__ import annotations

from typing import Any

from ..registry import Need, factory

IMAGE_EMBEDDING_CHANNELS = 16  # the EfficientNet features a prior predicts (the real ones' depth too)
PAELLA_LATENT_CHANNELS = 4  # the decoders' latents: `prepare_latents` hard-codes 4
CASCADE_WIDTH = 32  # every level's channels
CASCADE_HEADS = 2
TIMESTEP_EMBED_DIM = 16  # the timestep ratio's sinusoidal embedding (each of ratio, `sca`, `crp` in Stable Cascade)
_BLOCKS = ("SDCascadeResBlock", "SDCascadeTimestepBlock", "SDCascadeAttnBlock")


def _awake(model: Any) -> Any:
    """`model` with what is zero-initialized upstream drawn from the seed: every all-zero convolution / linear weight
    re-drawn by its own initializer (Würstchen's decoder zeroes its timestep mappers and output layer), and the
    gains and biases of the global response norms and the Paella blocks' modulations (zeros: identities) drawn
    around 0."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            convolution = isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))
            if convolution and not module.weight.any():
                module.reset_parameters()
        for name, parameter in model.named_parameters():
            if name.rpartition(".")[2] in ("gamma", "beta", "gammas") and not parameter.any():
                parameter.normal_(std=0.1)
    return model


def _is_prior(need: Need) -> bool:
    """A Stable Cascade UNet in its prior's role (`prior`, or `prior_prior` in the combined pipeline)."""
    return need.name.endswith("prior")


@factory("StableCascadeUNet")
def stable_cascade_unet(need: Need):
    """Two levels of `CASCADE_WIDTH` channels, one layer each; the prior (conditioned on the prompt's states, its
    pooled embedding and an image embedding, at its features' grid size throughout) or the decoder (conditioned on
    the pooled prompt and on the prior's features, halving its latents' grid once), by the component's name."""
    d = need.dims
    common = {
        "timestep_ratio_embedding_dim": TIMESTEP_EMBED_DIM,
        "conditioning_dim": CASCADE_WIDTH,
        "block_out_channels": (CASCADE_WIDTH, CASCADE_WIDTH),
        "num_attention_heads": (CASCADE_HEADS, CASCADE_HEADS),
        "down_num_layers_per_block": (1, 1),
        "up_num_layers_per_block": (1, 1),
        "down_blocks_repeat_mappers": (1, 1),
        "up_blocks_repeat_mappers": (1, 1),
        "block_types_per_layer": (_BLOCKS, _BLOCKS),
        "clip_text_pooled_in_channels": d.clip_projection,
        "clip_seq": 2,
        "dropout": (0.0, 0.0),
    }
    build = lambda **kwargs: _awake(need.cls(**kwargs))  # noqa: E731
    if _is_prior(need):
        return need.model(
            build,
            **common,
            in_channels=IMAGE_EMBEDDING_CHANNELS,
            out_channels=IMAGE_EMBEDDING_CHANNELS,
            clip_text_in_channels=need.text_width(),
            clip_image_in_channels=d.clip_projection,
            switch_level=(False,),
        )
    return need.model(
        build,
        **common,
        in_channels=PAELLA_LATENT_CHANNELS,
        out_channels=PAELLA_LATENT_CHANNELS,
        effnet_in_channels=IMAGE_EMBEDDING_CHANNELS,
        pixel_mapper_in_channels=3,
        switch_level=None,
    )


@factory("WuerstchenPrior")
def wuerstchen_prior(need: Need):
    """`dims.layers` blocks (residual, timestep, attention) of `CASCADE_WIDTH` channels over the image features,
    attending to the prompt's CLIP states; its output layer drawn small (see the module docstring)."""
    d = need.dims

    def build(**kwargs):
        import torch

        prior = _awake(need.cls(**kwargs))
        with torch.no_grad():
            prior.out[1].weight.normal_(std=0.02)
            prior.out[1].bias.normal_(std=0.02)
        return prior

    return need.model(
        build,
        c_in=IMAGE_EMBEDDING_CHANNELS,
        c=CASCADE_WIDTH,
        c_cond=need.text_width(),
        c_r=TIMESTEP_EMBED_DIM,
        depth=d.layers,
        nhead=CASCADE_HEADS,
        dropout=0.0,
    )


@factory("WuerstchenDiffNeXt")
def wuerstchen_diffnext(need: Need):
    """Würstchen's decoder: two levels (16 and 32 channels, one layer each; attention and the prior's features only
    on the second), 2 x 2 patches, attending to the prompt's CLIP states. Its latents' grid is a multiple of 4 a side
    (patches, then one halving: it has no resize for a grid that does not halve evenly)."""
    return need.model(
        lambda **kwargs: _awake(need.cls(**kwargs)),
        c_in=PAELLA_LATENT_CHANNELS,
        c_out=PAELLA_LATENT_CHANNELS,
        c_r=TIMESTEP_EMBED_DIM,
        patch_size=2,
        c_cond=CASCADE_WIDTH,
        c_hidden=[CASCADE_WIDTH // 2, CASCADE_WIDTH],
        nhead=[-1, CASCADE_HEADS],
        blocks=[1, 1],
        level_config=["CT", "CTA"],
        inject_effnet=[False, True],
        effnet_embd=IMAGE_EMBEDDING_CHANNELS,
        clip_embd=need.text_width(),
        dropout=0.0,
    )


@factory("PaellaVQModel")
def paella_vq_model(need: Need):
    """The decoders' VQ model: two levels (8 and 16 channels) and one bottleneck block, `PAELLA_LATENT_CHANNELS`
    latent channels, a `dims.codebook_size` codebook; it decodes latents to 4 times their size (one transposed
    convolution, then a 2 x 2 pixel shuffle)."""
    return need.model(
        lambda **kwargs: _awake(need.cls(**kwargs)),
        in_channels=3,
        out_channels=3,
        up_down_scale_factor=2,
        levels=2,
        bottleneck_blocks=1,
        embed_dim=16,
        latent_channels=PAELLA_LATENT_CHANNELS,
        num_vq_embeddings=need.dims.codebook_size,
    )
