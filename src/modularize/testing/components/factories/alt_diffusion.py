"""AltDiffusion's text encoder: diffusers' own `RobertaSeriesModelWithTransformation` (an XLM-RoBERTa whose last
hidden states are projected by one linear layer), paired with the XLM-RoBERTa tokenizer."""

from __future__ import annotations

from ..registry import Need, factory


@factory("RobertaSeriesModelWithTransformation")
def roberta_series(need: Need):
    """An XLM-RoBERTa as wide as every text encoder whose projection (`project_dim`) is that width too: the pipeline
    feeds the projected states (`text_encoder(...)[0]`) to the UNet's cross-attention, which is as wide as the text
    encoders. XLM-R numbers positions from past its padding id: position embeddings for the pipeline's 77 tokens
    start there. Its special ids are the paired tokenizer's (`<s>` 0, `<pad>` 1, `</s>` 2, as in the config's
    defaults)."""
    tokenizer = need.tokenizer()
    d = need.dims
    width = need.text_width(need.name)
    config = need.cls.config_class(
        project_dim=width,
        vocab_size=len(tokenizer),
        hidden_size=width,
        num_hidden_layers=d.text_layers,
        num_attention_heads=d.text_heads,
        intermediate_size=d.text_intermediate,
        max_position_embeddings=d.clip_max_length + tokenizer.pad_token_id + 1,
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return need.model(need.cls, config=config)
