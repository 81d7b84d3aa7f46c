"""Generated package vs diffusers' hand-written modular pipeline, both against the standard pipeline.

    .venv/bin/python benchmarks/hand_written_vs_generated.py [--pipelines StableDiffusionXLPipeline ...]

For each pipeline that has a hand-written modular version in diffusers, runs the built-in tiny matrix (tiny
offline components, one CPU thread, the same seed) through the standard pipeline, the package modularize
generates, and the hand-written modular pipeline, and prints one table: the max abs difference of each to the
standard output per case, or the error it raised. The hand-written pipelines take their guidance from a guider
component, configured here the way the standard call's arguments would configure it.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffusers.guiders import ClassifierFreeGuidance
from diffusers.utils import logging as diffusers_logging

from modularize.cli import main as modularize
from modularize.source_file import installed_diffusers_file
from modularize.testing.compare import difference
from modularize.testing.equivalence import Equivalence, _with_case_components
from modularize.testing.tiny import setup_for


def _hand_written(blocks: str, pipeline: str, cfg: Callable[[dict], bool], passes: tuple[str, ...]):
    """How to run one hand-written modular pipeline with a standard call's arguments."""

    def run(components: dict[str, Any], inputs: dict[str, Any], seed: int):
        module = importlib.import_module("diffusers.modular_pipelines")
        pipe = getattr(module, pipeline)(blocks=getattr(module, blocks)())
        known = {*pipe._component_specs}
        pipe.update_components(**{k: v for k, v in components.items() if k in known})
        scale = inputs.get("guidance_scale", pipe.guider.guidance_scale if pipe.guider is not None else 1.0)
        rescale = inputs.get("guidance_rescale", 0.0)
        enabled = cfg({**inputs, "guidance_scale": scale})
        guider = ClassifierFreeGuidance(guidance_scale=scale, guidance_rescale=rescale if enabled else 0.0)
        guider._enabled = enabled
        pipe.update_components(guider=guider)
        pending = [pipe._blocks]
        while pending:
            block = pending.pop()
            if hasattr(block, "set_progress_bar_config"):
                block.set_progress_bar_config(disable=True)
            pending += list(block.sub_blocks.values())
        kwargs = {k: v for k, v in inputs.items() if k in passes}
        return pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(seed), output="images")

    return run


COMMON = (
    "prompt",
    "negative_prompt",
    "num_images_per_prompt",
    "num_inference_steps",
    "output_type",
    "height",
    "width",
)
HAND_WRITTEN = {
    "StableDiffusionXLPipeline": (
        "pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py",
        _hand_written(
            "StableDiffusionXLAutoBlocks",
            "StableDiffusionXLModularPipeline",
            lambda inputs: inputs["guidance_scale"] > 1,
            (*COMMON, "prompt_2", "negative_prompt_2", "eta"),
        ),
    ),
    "StableDiffusion3Pipeline": (
        "pipelines/stable_diffusion_3/pipeline_stable_diffusion_3.py",
        _hand_written(
            "StableDiffusion3AutoBlocks",
            "StableDiffusion3ModularPipeline",
            lambda inputs: inputs["guidance_scale"] > 1,
            (*COMMON, "prompt_2", "prompt_3", "negative_prompt_2", "negative_prompt_3"),
        ),
    ),
}


def _cell(value) -> str:
    if isinstance(value, str):
        return value
    return "bitwise" if value == 0 else f"{value:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", nargs="*", default=list(HAND_WRITTEN))
    args = parser.parse_args()
    torch.set_num_threads(1)
    diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)
    warnings.simplefilter("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for name in args.pipelines:
            source, hand_written = HAND_WRITTEN[name]
            package = Path(directory) / name
            assert modularize([str(installed_diffusers_file(source)), "-o", str(package), "-q"]) == 0
            equivalence = Equivalence(package)
            setup = setup_for(name)
            for case_name, overrides in setup.cases:
                generated, _ = equivalence.run({**overrides}, "plain")
                generated_cell = generated.max_abs_diff if generated.status == "compared" else generated.status
                inputs = {**equivalence.base_inputs, **overrides}
                components, call = _with_case_components(equivalence.pristine, inputs)
                standard = equivalence.standard(copy.deepcopy(components), call, exact=False, cfg=False)["images"]
                try:
                    other = hand_written(copy.deepcopy(components), call, equivalence.seed)
                    hand_cell = difference(standard, other).max_abs_diff
                except Exception as error:  # the table reports it
                    hand_cell = f"error: {type(error).__name__}: {str(error)[:60]}"
                rows.append((name, case_name, generated_cell, hand_cell))
    header = ("pipeline", "case", "generated", "hand-written")
    shown = [(name, case, _cell(a), _cell(b)) for name, case, a, b in rows]
    widths = [max(len(row[i]) for row in [header, *shown]) for i in range(4)]
    print("max abs difference to the standard pipeline (plain mode, tiny components, 1 thread)")
    for row in [header, *shown]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    for label, column in (("generated", 2), ("hand-written", 3)):
        errors = sum(1 for row in rows if isinstance(row[column], str))
        bitwise = sum(1 for row in rows if row[column] == 0)
        within = sum(1 for row in rows if not isinstance(row[column], str) and row[column] <= 1e-5)
        print(f"{label}: {bitwise}/{len(rows)} bitwise, {within}/{len(rows)} within 1e-5, {errors} errors")


if __name__ == "__main__":
    main()
