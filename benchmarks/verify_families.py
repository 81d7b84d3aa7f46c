"""Every family of the installed diffusers this project knows of, as one package each, verified.

    .venv/bin/python benchmarks/verify_families.py [--only sd flux ...] [--alone] [--jobs 2]

For each family it converts the pipelines together (`modularize convert A.py B.py ... -o DIR`) into a temporary
directory and verifies every workflow through the family's pipeline against its own standard pipeline, plain and
exact, on the built-in matrices (`modularize verify DIR --exact`); with `--alone`, also every block of every workflow
run alone. It prints one line per family: converted or refused (and why), runs, runs compared (the others the
standard pipeline rejects), bitwise runs, blocks alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from modularize.frontend.source_file import installed_diffusers_file

FAMILIES = {
    "sd": ["stable_diffusion/pipeline_stable_diffusion", "_img2img", "_inpaint"],
    "sdxl": ["stable_diffusion_xl/pipeline_stable_diffusion_xl", "_img2img", "_inpaint"],
    "sd3": ["stable_diffusion_3/pipeline_stable_diffusion_3", "_img2img", "_inpaint"],
    "flux": ["flux/pipeline_flux", "_img2img", "_inpaint"],
    "qwenimage": ["qwenimage/pipeline_qwenimage", "_img2img", "_inpaint"],
    "chroma": ["chroma/pipeline_chroma", "_img2img", "_inpainting"],
    "z_image": ["z_image/pipeline_z_image", "_img2img", "_inpaint"],
    "kolors": ["kolors/pipeline_kolors", "_img2img"],
    "sd_controlnet": ["controlnet/pipeline_controlnet", "_img2img", "_inpaint"],
    "sdxl_controlnet": [
        "controlnet/pipeline_controlnet_sd_xl",
        "controlnet/pipeline_controlnet_sd_xl_img2img",
        "controlnet/pipeline_controlnet_inpaint_sd_xl",
    ],
    # ControlNet's control `image` beside image-to-image's init `image`: the family takes it as `control_net_image`
    "sdxl_with_controlnet": [
        "stable_diffusion_xl/pipeline_stable_diffusion_xl",
        "_img2img",
        "_inpaint",
        "controlnet/pipeline_controlnet_sd_xl",
    ],
    "sdxl_with_controlnets": [
        "stable_diffusion_xl/pipeline_stable_diffusion_xl",
        "_img2img",
        "_inpaint",
        "controlnet/pipeline_controlnet_sd_xl",
        "controlnet/pipeline_controlnet_sd_xl_img2img",
        "controlnet/pipeline_controlnet_inpaint_sd_xl",
    ],
    # InstructPix2Pix's edited `image` beside image-to-image's: taken as `instruct_pix2pix_image`; its three-way guider
    "sdxl_with_pix2pix": [
        "stable_diffusion_xl/pipeline_stable_diffusion_xl",
        "_img2img",
        "_inpaint",
        "_instruct_pix2pix",
    ],
    "sd_pag": ["pag/pipeline_pag_sd", "_img2img", "_inpaint"],
    "sdxl_pag": ["pag/pipeline_pag_sd_xl", "_img2img", "_inpaint"],
    "sd3_pag": ["pag/pipeline_pag_sd_3", "_img2img"],
    "sana_sprint": ["sana/pipeline_sana_sprint", "_img2img"],
    "cogvideox": ["cogvideo/pipeline_cogvideox", "_image2video", "_video2video"],
    "animatediff": ["animatediff/pipeline_animatediff", "_video2video"],
    "ltx": ["ltx/pipeline_ltx", "_image2video"],
    "wan": ["wan/pipeline_wan", "_i2v", "_video2video"],
    "cogview4": ["cogview4/pipeline_cogview4", "_control"],
    "sd3_controlnet": ["controlnet_sd3/pipeline_stable_diffusion_3_controlnet", "_inpainting"],
    "flux_kontext": ["flux/pipeline_flux_kontext", "_inpaint"],
    "kandinsky3": ["kandinsky3/pipeline_kandinsky3", "_img2img"],
    "lcm": [
        "latent_consistency_models/pipeline_latent_consistency_text2img",
        "latent_consistency_models/pipeline_latent_consistency_img2img",
    ],
    "skyreels_v2": ["skyreels_v2/pipeline_skyreels_v2", "_i2v"],
    # five workflows; SparseControlNet's `controlnet` of another class than ControlNet's
    "animatediff_all": [
        "animatediff/pipeline_animatediff",
        "_controlnet",
        "_sparsectrl",
        "_video2video",
        "_video2video_controlnet",
    ],
    # Framepack's trigger `image`; image-to-video takes its `image` as `image_to_video_image`
    "hunyuan_video": [
        "hunyuan_video/pipeline_hunyuan_video",
        "_framepack",
        "hunyuan_video/pipeline_hunyuan_video_image2video",
    ],
    # priors among decoders: the prior's `image_processor` component, image-to-image's derived one
    "kandinsky2_2": [
        "kandinsky2_2/pipeline_kandinsky2_2",
        "_controlnet",
        "_controlnet_img2img",
        "_img2img",
        "_inpainting",
        "_prior",
        "_prior_emb2emb",
    ],
}
ALONE = """
import json, sys
from modularize.commands.verify import package_classes, load_package
from modularize.testing.equivalence import workflows_of
from modularize.testing.standalone_blocks import blocks_alone
package = sys.argv[1]
results = []
for workflow in workflows_of(package_classes(load_package(package))[0]):
    results += [r.status for r in blocks_alone(package, workflow=workflow)]
print(json.dumps(results))
"""


def files_of(family: str) -> list[str]:
    base, *others = FAMILIES[family]
    names = [base, *(other if "/" in other else base + other for other in others)]
    return [str(installed_diffusers_file(f"pipelines/{name}.py")) for name in names]


def run(family: str, alone: bool) -> str:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        package = Path(directory) / f"modular_{family}"
        convert = [sys.executable, "-m", "modularize.cli", "convert", *files_of(family), "-o", str(package), "-q"]
        done = subprocess.run(convert, capture_output=True, text=True)
        if done.returncode != 0:
            return f"{family:16} refused (exit {done.returncode}): {done.stderr.strip()[:160]}"
        verify = [sys.executable, "-m", "modularize.cli", "verify", str(package), "--exact", "--json", "--no-png"]
        report = json.loads(subprocess.run(verify, capture_output=True, text=True).stdout)
        cases = report["cases"]
        compared = [case for case in cases if case["status"] == "compared"]
        bitwise = sum(1 for case in compared if case["bitwise"])
        # (a run the standard pipeline itself rejects is skipped, as `verify` skips it)
        line = f"{family:16} {len(cases):4} runs, {len(compared):4} compared, {bitwise:4} bitwise"
        if alone:
            found = subprocess.run([sys.executable, "-c", ALONE, str(package)], capture_output=True, text=True)
            statuses = json.loads(found.stdout) if found.returncode == 0 else []
            equal = statuses.count("equal")
            line += f", blocks alone {equal}/{len(statuses)} equal" if statuses else ", blocks alone: failed"
    return line + f"  ({time.perf_counter() - started:.0f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(FAMILIES))
    parser.add_argument("--alone", action="store_true", help="also run every block of every workflow alone")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(lambda family: run(family, args.alone), args.only or FAMILIES):
            print(line, flush=True)


if __name__ == "__main__":
    main()
