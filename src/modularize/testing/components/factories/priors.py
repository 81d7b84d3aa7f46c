"""Image-embedding models: priors that denoise a CLIP image embedding from a prompt's, and the normalizer that
noise-augments one. Every embedding is `dims.clip_projection` wide (the CLIP encoders' projection)."""

from __future__ import annotations

from ..registry import Need, factory


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

    return need.model(
        build,
        num_attention_heads=d.heads,
        attention_head_dim=d.head_dim,
        num_layers=d.layers,
        embedding_dim=d.clip_projection,
        num_embeddings=d.clip_max_length,
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
