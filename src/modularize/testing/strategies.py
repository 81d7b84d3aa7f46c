"""Hypothesis strategies for standard-pipeline calls, drawn from the arguments a pipeline actually has.

    @given(data=st.data())
    def test_random_calls(equivalence, data):
        inputs = data.draw(standard_call_inputs(equivalence.arguments))
        equivalence.assert_equivalent(inputs)

Values are chosen to cross the lines where pipelines change behaviour: guidance scales on both sides of the CFG
threshold, one and two prompts, one and two images per prompt, sizes the VAE and UNet accept and one they do not
(36 is not a multiple of 8, so both pipelines must reject it), every output type, and the schedulers whose step
draws noise (DDIM with `eta`) or rescales the model input (Euler). `seed` picks the generator's seed.
"""

from __future__ import annotations

from collections.abc import Collection

from hypothesis import settings
from hypothesis import strategies as st

WORDS = ("a", "cat", "the", "dog", "photo", "blurry", "moon", "and")
SCHEDULERS = (None, "DDIMScheduler", "EulerDiscreteScheduler")
DEFAULT_BUDGET = 6  # examples per run unless a profile says otherwise: seconds, not minutes

settings.register_profile("modularize-ci", max_examples=60, deadline=None)
settings.register_profile("modularize-quick", max_examples=DEFAULT_BUDGET, deadline=None)


def budget(default: int = DEFAULT_BUDGET) -> int:
    """A few examples by default; the loaded profile's count when one was chosen (`--hypothesis-profile`)."""
    return default if settings.get_current_profile_name() == "default" else settings().max_examples


def _text() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)


@st.composite
def standard_call_inputs(draw, arguments: Collection[str]) -> dict:
    """Keyword arguments for a standard call (plus `seed` and `scheduler`, which the harness interprets)."""
    arguments = set(arguments)
    inputs: dict = {"seed": draw(st.integers(0, 2**16))}
    prompts = draw(st.integers(1, 2))
    if "prompt" in arguments:
        inputs["prompt"] = (
            draw(_text())
            if prompts == 1 and draw(st.booleans())
            else draw(st.lists(_text(), min_size=prompts, max_size=prompts))
        )
    if "negative_prompt" in arguments:
        # a list of the wrong length is an input both pipelines must reject
        inputs["negative_prompt"] = draw(
            st.none() | _text() | st.lists(_text(), min_size=prompts, max_size=prompts) | st.lists(_text(), min_size=3)
        )
    if "num_images_per_prompt" in arguments:
        inputs["num_images_per_prompt"] = draw(st.integers(1, 2))
    if "num_inference_steps" in arguments:
        inputs["num_inference_steps"] = draw(st.integers(1, 3))
    if "guidance_scale" in arguments:
        inputs["guidance_scale"] = draw(
            st.sampled_from([0.0, 1.0, 1.5, 7.5]) | st.floats(0.0, 10.0, allow_nan=False).map(lambda x: round(x, 2))
        )
    if "guidance_rescale" in arguments:
        inputs["guidance_rescale"] = draw(st.sampled_from([0.0, 0.5, 0.7]))
    for side in ("height", "width"):
        if side in arguments and draw(st.booleans()):
            inputs[side] = draw(st.sampled_from([24, 32, 40, 36]))
    if "output_type" in arguments:
        inputs["output_type"] = draw(st.sampled_from(["np", "latent", "pt", "pil"]))
    scheduler = draw(st.sampled_from(SCHEDULERS))
    if scheduler is not None:
        inputs["scheduler"] = scheduler
    if "eta" in arguments:
        inputs["eta"] = draw(st.sampled_from([0.0, 0.5, 1.0]))
    return inputs
