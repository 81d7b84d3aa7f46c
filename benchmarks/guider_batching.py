"""What the guider abstraction costs per call: generated modular / standard (SD, SDXL, Z-Image), and diffusers'
hand-written SDXL.

    .venv/bin/python benchmarks/guider_batching.py [--repeats 15] [--steps 4]

CPU, tiny offline components, one thread, runs interleaved (each repeat times every variant once, so drift in the
machine's speed hits all of them alike), medians. With CFG on, a guider makes one denoiser call per batch where
the standard pipeline makes one call on the concatenated batch; the generated denoiser merges the batches back
into one call when that is valid (`batch_guider_calls`, on by default); Z-Image's batches each prepare their own
call's arguments first, which are joined. Printed per variant: median seconds per pipeline call and the ratio to
the standard pipeline under the same CFG setting (CFG off is guidance 1.0, or 0.0 for Z-Image, whose CFG is on
above 0).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, ZImagePipeline
from diffusers.guiders import ClassifierFreeGuidance
from diffusers.modular_pipelines import StableDiffusionXLAutoBlocks, StableDiffusionXLModularPipeline
from diffusers.utils import logging as diffusers_logging

from modularize.cli import main as modularize
from modularize.commands.verify import load_package, package_classes
from modularize.frontend.source_file import installed_diffusers_file
from modularize.testing.equivalence import silence_progress_bars
from modularize.testing.tiny import setup_for, stable_diffusion_components, stable_diffusion_xl_components

SD = "pipelines/stable_diffusion/pipeline_stable_diffusion.py"
SDXL = "pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py"
Z_IMAGE = "pipelines/z_image/pipeline_z_image.py"
Z_IMAGE_SETUP = setup_for("ZImagePipeline")
# the tiny Z-Image transformer's sizes; the prompt is the same for every variant
Z_IMAGE_INPUTS = {k: v for k, v in Z_IMAGE_SETUP.inputs().items() if k in ("height", "width", "max_sequence_length")}


def _guidance(base: dict, guidance_scale: float) -> float:
    """CFG off is 1.0 for SD and SDXL, 0.0 for Z-Image (on above 0)."""
    return 0.0 if base is Z_IMAGE_INPUTS and guidance_scale == 1.0 else guidance_scale


def _generated(directory: Path, source: str, components, batching: bool, base: dict | None = None):
    package = directory / Path(source).stem
    if not package.exists():
        assert modularize([str(installed_diffusers_file(source)), "-o", str(package), "-q"]) == 0
    pipeline_cls, blocks_cls = package_classes(load_package(package))
    pipe = pipeline_cls(blocks=blocks_cls())
    given = components()
    pipe.update_components(**{k: v for k, v in given.items() if k in pipe._component_specs})
    pipe.update_components(batch_guider_calls=batching)
    silence_progress_bars(pipe)

    base = base or {}

    def run(guidance_scale: float, steps: int):
        scale = _guidance(base, guidance_scale)
        kwargs = pipe.translate_standard_call(prompt="a photo of a cat", guidance_scale=scale, **base)
        return pipe(**kwargs, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output="images")

    return run


def _standard(pipeline_cls, components, base: dict | None = None):
    pipe = pipeline_cls(**components)
    pipe.set_progress_bar_config(disable=True)
    base = base or {}

    def run(guidance_scale: float, steps: int):
        generator = torch.Generator().manual_seed(0)
        scale = _guidance(base, guidance_scale)
        return pipe(
            prompt="a photo of a cat", guidance_scale=scale, num_inference_steps=steps, generator=generator, **base
        )

    return run


def _hand_written_sdxl():
    pipe = StableDiffusionXLModularPipeline(blocks=StableDiffusionXLAutoBlocks())
    pipe.update_components(**stable_diffusion_xl_components())
    silence_progress_bars(pipe)

    def run(guidance_scale: float, steps: int):
        # the hand-written pipeline takes its guidance from the guider component
        pipe.update_components(
            guider=ClassifierFreeGuidance(guidance_scale=guidance_scale, enabled=guidance_scale > 1)
        )
        generator = torch.Generator().manual_seed(0)
        return pipe(prompt="a photo of a cat", num_inference_steps=steps, generator=generator, output="images")

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    diffusers_logging.set_verbosity_error()
    warnings.simplefilter("ignore")

    with tempfile.TemporaryDirectory() as directory:
        variants = {
            "StableDiffusionPipeline (standard)": _standard(
                StableDiffusionPipeline, copy.deepcopy(stable_diffusion_components())
            ),
            "generated SD modular, batched guider calls": _generated(
                Path(directory), SD, stable_diffusion_components, True
            ),
            "generated SD modular, one call per batch": _generated(
                Path(directory), SD, stable_diffusion_components, False
            ),
            "StableDiffusionXLPipeline (standard)": _standard(
                StableDiffusionXLPipeline, stable_diffusion_xl_components()
            ),
            "generated SDXL modular, batched guider calls": _generated(
                Path(directory), SDXL, stable_diffusion_xl_components, True
            ),
            "generated SDXL modular, one call per batch": _generated(
                Path(directory), SDXL, stable_diffusion_xl_components, False
            ),
            "diffusers' hand-written SDXL modular": _hand_written_sdxl(),
            "ZImagePipeline (standard)": _standard(ZImagePipeline, Z_IMAGE_SETUP.components(), Z_IMAGE_INPUTS),
            "generated Z-Image modular, batched guider calls": _generated(
                Path(directory), Z_IMAGE, Z_IMAGE_SETUP.components, True, Z_IMAGE_INPUTS
            ),
            "generated Z-Image modular, one call per batch": _generated(
                Path(directory), Z_IMAGE, Z_IMAGE_SETUP.components, False, Z_IMAGE_INPUTS
            ),
        }
        baselines = {
            "generated SD modular, batched guider calls": "StableDiffusionPipeline (standard)",
            "generated SD modular, one call per batch": "StableDiffusionPipeline (standard)",
            "generated SDXL modular, batched guider calls": "StableDiffusionXLPipeline (standard)",
            "generated SDXL modular, one call per batch": "StableDiffusionXLPipeline (standard)",
            "diffusers' hand-written SDXL modular": "StableDiffusionXLPipeline (standard)",
            "generated Z-Image modular, batched guider calls": "ZImagePipeline (standard)",
            "generated Z-Image modular, one call per batch": "ZImagePipeline (standard)",
        }
        for guidance_scale, label in (
            (7.5, "CFG on (guidance_scale 7.5)"),
            (1.0, "CFG off (guidance_scale 1.0 / 0.0)"),
        ):
            for run in variants.values():  # warm-up
                run(guidance_scale, args.steps)
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.repeats):
                for name, run in variants.items():
                    started = time.perf_counter()
                    run(guidance_scale, args.steps)
                    times[name].append(time.perf_counter() - started)
            medians = {name: statistics.median(values) for name, values in times.items()}
            print(f"{label}: {args.repeats} interleaved repeats, {args.steps} steps, 1 thread, medians")
            for name, median in medians.items():
                ratio = f"  ratio {median / medians[baselines[name]]:.2f}" if name in baselines else ""
                print(f"  {name:48s} {median * 1000:8.1f} ms{ratio}")
            print()


if __name__ == "__main__":
    main()
