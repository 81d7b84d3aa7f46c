"""Generated package vs diffusers' hand-written modular pipeline, both against the standard pipeline.

    .venv/bin/python benchmarks/hand_written_vs_generated.py [--pipelines FluxPipeline WanPipeline ...]

For each pipeline that has a hand-written modular version in diffusers, runs the built-in tiny matrix (tiny
offline components, one CPU thread, the same seed) through the standard pipeline, the package modularize
generates, and the hand-written modular pipeline, and prints one table: the max abs difference of each to the
standard output per case, or the error it raised, and the call time of each against the standard pipeline's
(measured in the same run, the fastest of three calls each, after the comparison runs warmed everything up). The hand-written
pipelines take their guidance from a guider component, configured here the way the standard call's arguments
would configure it.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers.guiders import ClassifierFreeGuidance
from diffusers.utils import logging as diffusers_logging

from modularize.cli import main as modularize
from modularize.frontend.source_file import installed_diffusers_file
from modularize.testing.compare import difference
from modularize.testing.equivalence import Equivalence, _with_case_components, silence_progress_bars


def _guider(scale: float, enabled: bool, rescale: float = 0.0) -> ClassifierFreeGuidance:
    return ClassifierFreeGuidance(guidance_scale=scale, guidance_rescale=rescale if enabled else 0.0, enabled=enabled)


def _cfg_guiders(inputs: dict[str, Any], default: float, threshold: float = 1.0) -> dict[str, Any]:
    """`guidance_scale` (and `guidance_rescale`) as the standard pipeline uses them: CFG above `threshold`."""
    scale = inputs.get("guidance_scale", default)
    return {"guider": _guider(scale, scale > threshold, inputs.get("guidance_rescale", 0.0))}


def _true_cfg_guiders(inputs: dict[str, Any], default: float) -> dict[str, Any]:
    """`true_cfg_scale`, on only with a negative prompt, as Flux and QwenImage decide it."""
    scale = inputs.get("true_cfg_scale", default)
    return {"guider": _guider(scale, scale > 1 and inputs.get("negative_prompt") is not None)}


def _wan_guiders(inputs: dict[str, Any]) -> dict[str, Any]:
    scale = inputs.get("guidance_scale", 5.0)
    second = inputs.get("guidance_scale_2") or scale
    return {"guider": _guider(scale, scale > 1), "guider_2": _guider(second, scale > 1)}


@dataclass(frozen=True)
class HandWritten:
    """How to run diffusers' hand-written modular pipeline for a model with a standard call's arguments."""

    source: str  # the standard pipeline, relative to the installed diffusers
    blocks: str
    pipeline: str
    output: str  # the name of its output in the pipeline state
    guiders: Callable[[dict[str, Any]], dict[str, Any]]  # guider components the standard call's arguments mean
    one_stage: tuple[str, str] | None = None  # (blocks, pipeline) for components without a second transformer
    renamed: tuple[tuple[str, str], ...] = ()  # (standard argument, hand-written input) where the names differ

    def run(self, components: dict[str, Any], inputs: dict[str, Any], seed: int):
        module = importlib.import_module("diffusers.modular_pipelines")
        blocks, pipeline = self.blocks, self.pipeline
        if self.one_stage and components.get("transformer_2") is None:
            blocks, pipeline = self.one_stage
        pipe = getattr(module, pipeline)(blocks=getattr(module, blocks)())
        known = {*pipe._component_specs, *getattr(pipe, "_config_specs", {})}
        pipe.update_components(**{k: v for k, v in components.items() if k in known})
        guiders = {name: guider for name, guider in self.guiders(inputs).items() if name in known}
        if guiders:
            pipe.update_components(**guiders)
        silence_progress_bars(pipe)
        accepted = {p.name for p in pipe._blocks.inputs if p.name}
        names = dict(self.renamed)
        kwargs = {names.get(k, k): v for k, v in inputs.items() if names.get(k, k) in accepted}
        return pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(seed), output=self.output)


HAND_WRITTEN = {
    "StableDiffusionXLPipeline": HandWritten(
        "pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py",
        "StableDiffusionXLAutoBlocks",
        "StableDiffusionXLModularPipeline",
        "images",
        lambda inputs: _cfg_guiders(inputs, 5.0),
    ),
    # the same blocks select their ControlNet workflow by the control image they are given
    "StableDiffusionXLControlNetPipeline": HandWritten(
        "pipelines/controlnet/pipeline_controlnet_sd_xl.py",
        "StableDiffusionXLAutoBlocks",
        "StableDiffusionXLModularPipeline",
        "images",
        lambda inputs: _cfg_guiders(inputs, 5.0),
        renamed=(("image", "control_image"),),
    ),
    "StableDiffusion3Pipeline": HandWritten(
        "pipelines/stable_diffusion_3/pipeline_stable_diffusion_3.py",
        "StableDiffusion3AutoBlocks",
        "StableDiffusion3ModularPipeline",
        "images",
        lambda inputs: _cfg_guiders(inputs, 7.0),
    ),
    # the hand-written Flux pipeline has no guider: it embeds `guidance_scale` and cannot do true CFG
    "FluxPipeline": HandWritten(
        "pipelines/flux/pipeline_flux.py", "FluxAutoBlocks", "FluxModularPipeline", "images", lambda inputs: {}
    ),
    "QwenImagePipeline": HandWritten(
        "pipelines/qwenimage/pipeline_qwenimage.py",
        "QwenImageAutoBlocks",
        "QwenImageModularPipeline",
        "images",
        lambda inputs: _true_cfg_guiders(inputs, 4.0),
    ),
    "WanPipeline": HandWritten(
        "pipelines/wan/pipeline_wan.py",
        "Wan22Blocks",
        "Wan22ModularPipeline",
        "videos",
        _wan_guiders,
        one_stage=("WanBlocks", "WanModularPipeline"),
    ),
    "ZImagePipeline": HandWritten(
        "pipelines/z_image/pipeline_z_image.py",
        "ZImageAutoBlocks",
        "ZImageModularPipeline",
        "images",
        lambda inputs: _cfg_guiders(inputs, 5.0, threshold=0.0),
    ),
}


def _timed(call: Callable[[Any, Any], Any], components: dict[str, Any], inputs: dict[str, Any], repeat: int = 3):
    """(the last result, the fastest of `repeat` calls in seconds), each call on its own copies (not timed)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        mine, given = copy.deepcopy(components), copy.deepcopy(inputs)
        started = time.perf_counter()
        result = call(mine, given)
        best = min(best, time.perf_counter() - started)
    return result, best


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
            hand_written = HAND_WRITTEN[name]
            package = Path(directory) / name
            assert modularize([str(installed_diffusers_file(hand_written.source)), "-o", str(package), "-q"]) == 0
            equivalence = Equivalence(package)
            for case in equivalence.matrix:
                case_name, overrides = case.name, case.overrides
                generated, _ = equivalence.run({**overrides}, "plain")
                generated_cell = generated.max_abs_diff if generated.status == "compared" else generated.status
                inputs = {**equivalence.base_inputs, **overrides}
                components, call = _with_case_components(equivalence.pristine, inputs)
                outputs, seconds = {}, {}
                outputs["standard"], seconds["standard"] = _timed(
                    lambda c, i, e=equivalence: e.standard(c, i, exact=False), components, call
                )
                standard = next(iter(outputs["standard"].values()))
                _, seconds["generated"] = _timed(
                    lambda c, i, e=equivalence: e.modular(c, i, exact=False), components, call
                )
                try:
                    other, seconds["hand-written"] = _timed(
                        lambda c, i, h=hand_written, e=equivalence: h.run(c, i, e.seed), components, call
                    )
                    compared = difference(standard, other)
                    hand_cell = compared.max_abs_diff if compared.max_abs_diff != float("inf") else compared.detail
                except Exception as error:  # the table reports it
                    hand_cell = f"error: {type(error).__name__}: {str(error)[:60]}"
                rows.append((name, case_name, generated_cell, hand_cell, seconds))
    header = ("pipeline", "case", "generated", "hand-written", "standard ms", "generated x", "hand-written x")
    shown = [
        (
            name,
            case,
            _cell(a),
            _cell(b),
            f"{seconds['standard'] * 1000:.0f}",
            *(
                f"{seconds[side] / seconds['standard']:.2f}" if side in seconds else "-"
                for side in ("generated", "hand-written")
            ),
        )
        for name, case, a, b, seconds in rows
    ]
    widths = [max(len(row[i]) for row in [header, *shown]) for i in range(len(header))]
    print("max abs difference to the standard pipeline (plain mode, tiny components, 1 thread), and call time")
    print("against the standard pipeline's (the fastest of three calls each, the same process)")
    for row in [header, *shown]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    for label, column in (("generated", 2), ("hand-written", 3)):
        errors = sum(1 for row in rows if isinstance(row[column], str))
        bitwise = sum(1 for row in rows if row[column] == 0)
        within = sum(1 for row in rows if not isinstance(row[column], str) and row[column] <= 1e-5)
        print(f"{label}: {bitwise}/{len(rows)} bitwise, {within}/{len(rows)} within 1e-5, {errors} errors")


if __name__ == "__main__":
    main()
