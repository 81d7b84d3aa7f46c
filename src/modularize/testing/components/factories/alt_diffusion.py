"""AltDiffusion's text encoder: diffusers' own `RobertaSeriesModelWithTransformation` (an XLM-RoBERTa whose last
hidden states are projected by one linear layer), paired with the XLM-RoBERTa tokenizer."""

from __future__ import annotations

from ..registry import Need, factory
from .text import xlm_roberta_sizes


@factory("RobertaSeriesModelWithTransformation")
def roberta_series(need: Need):
    """An XLM-RoBERTa as wide as every text encoder whose projection (`project_dim`) is that width too: the pipeline
    feeds the projected states (`text_encoder(...)[0]`) to the UNet's cross-attention, which is as wide as the text
    encoders. XLM-R numbers positions from past its padding id: position embeddings for the pipeline's 77 tokens
    start there. Its special ids are the paired tokenizer's (`<s>` 0, `<pad>` 1, `</s>` 2, as in the config's
    defaults)."""
    width = need.text_width(need.name)
    config = need.cls.config_class(project_dim=width, **xlm_roberta_sizes(need, width))
    return need.model(need.cls, config=config)
