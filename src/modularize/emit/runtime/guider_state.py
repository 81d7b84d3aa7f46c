"""Per-step guider settings for denoisers whose source picked guidance values inside the loop.

Why this exists: a standard pipeline may label each pass (`cache_context("cond")`), pick a guidance scale per step
(one per denoiser, or 0 past a truncation point) or combine with values a guider does not have. A guider holds its
configuration for the whole call, so the generated `denoise.py` of such a package carries these helpers (copied by
name, with a `# Copied from modularize.emit.runtime.guider_state.<name>` line): `guider_batch_name` tells which
prediction a batch is for, `guider_attributes` sets values on the guider for one step and puts the old ones back.
"""

from contextlib import contextmanager


def guider_batch_name(guider, guider_state_batch):
    """Which prediction a guider batch is for: `pred_cond`, `pred_uncond`, ..."""
    return getattr(guider_state_batch, guider._identifier_key)


def guider_batch_label(guider, guider_state_batch, labels):
    """The standard pipeline's label for a guider batch (its pass's `cache_context("cond")`); a batch it has no pass
    for (a skip-layer guider's `pred_cond_skip`) is labelled by its own name."""
    name = guider_batch_name(guider, guider_state_batch)
    return labels.get(name, name)


@contextmanager
def guider_attributes(guider, **values):
    """Set guider attributes for one denoising step, then put the old values back.

    The standard pipeline picks some guidance values per step (a guidance scale per denoiser, a scale of 0 past a
    truncation point) or combines with values the guider does not have: the guider takes them for the step, and the
    pipeline's configuration is what it was before.
    """
    missing = object()
    saved = {name: getattr(guider, name, missing) for name in values}
    for name, value in values.items():
        setattr(guider, name, value)
    try:
        yield guider
    finally:
        for name, value in saved.items():
            if value is missing:
                delattr(guider, name)
            else:
                setattr(guider, name, value)
