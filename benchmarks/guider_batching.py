"""What the guider abstraction costs per call: generated modular / standard (SD, SDXL), and diffusers' hand-written
SDXL.

    .venv/bin/python benchmarks/guider_batching.py [--repeats 15] [--steps 4]

CPU, tiny offline components, one thread, runs interleaved (each repeat times every variant once, so drift in the
machine's speed hits all of them alike), medians. With CFG on, a guider makes one denoiser call per batch where
the standard pipeline makes one call on the concatenated batch; the generated denoiser merges the batches back
into one call when that is valid (`batch_guider_calls`, on by default). Printed per variant: median seconds per
pipeline call and the ratio to the standard pipeline under the same CFG setting.
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
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from diffusers.guiders import ClassifierFreeGuidance
from diffusers.modular_pipelines import StableDiffusionXLAutoBlocks, StableDiffusionXLModularPipeline
from diffusers.utils import logging as diffusers_logging

from modularize.cli import main as modularize
from modularize.source_file import installed_diffusers_file
from modularize.testing.equivalence import silence_progress_bars
from modularize.testing.tiny import stable_diffusion_components, stable_diffusion_xl_components
from modularize.verify import load_package, package_classes

SD = "pipelines/stable_diffusion/pipeline_stable_diffusion.py"
SDXL = "pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py"


def _generated(directory: Path, source: str, components, batching: bool):
    package = directory / Path(source).stem
    if not package.exists():
        assert modularize([str(installed_diffusers_file(source)), "-o", str(package), "-q"]) == 0
    pipeline_cls, blocks_cls = package_classes(load_package(package))
    pipe = pipeline_cls(blocks=blocks_cls())
    given = components()
    pipe.update_components(**{k: v for k, v in given.items() if k in pipe._component_specs})
    pipe.update_components(batch_guider_calls=batching)
    silence_progress_bars(pipe)

    def run(guidance_scale: float, steps: int):
        kwargs = pipe.translate_standard_call(prompt="a photo of a cat", guidance_scale=guidance_scale)
        return pipe(**kwargs, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output="images")

    return run


def _standard(pipeline_cls, components):
    pipe = pipeline_cls(**components)
    pipe.set_progress_bar_config(disable=True)

    def run(guidance_scale: float, steps: int):
        generator = torch.Generator().manual_seed(0)
        return pipe(
            prompt="a photo of a cat", guidance_scale=guidance_scale, num_inference_steps=steps, generator=generator
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
        }
        baselines = {
            "generated SD modular, batched guider calls": "StableDiffusionPipeline (standard)",
            "generated SD modular, one call per batch": "StableDiffusionPipeline (standard)",
            "generated SDXL modular, batched guider calls": "StableDiffusionXLPipeline (standard)",
            "generated SDXL modular, one call per batch": "StableDiffusionXLPipeline (standard)",
            "diffusers' hand-written SDXL modular": "StableDiffusionXLPipeline (standard)",
        }
        for guidance_scale, label in ((7.5, "CFG on (guidance_scale 7.5)"), (1.0, "CFG off (guidance_scale 1.0)")):
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
                print(f"  {name:46s} {median * 1000:8.1f} ms{ratio}")
            print()


if __name__ == "__main__":
    main()
