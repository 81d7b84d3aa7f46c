"""A generated pipeline saved with `save_pretrained` and loaded back by diffusers alone, in a fresh process.

    result = saved_and_loaded("modular_sdxl", work_dir)
    result.pipeline_class   # "StableDiffusionXLGeneratedModularPipeline": the package's class, not diffusers'
    result.difference       # against the standard pipeline on the same components and inputs

The parent builds the generated pipeline with the tiny components (`Equivalence.pipeline`) and saves it; a child
process that has never imported the package runs what a user would:

    pipe = ModularPipeline.from_pretrained(saved, trust_remote_code=True, components_manager=ComponentsManager())
    pipe.load_components()
    pipe(**pipe.translate_standard_call(**inputs))

and hands its outputs back; the parent compares them with the standard pipeline's. The child gets its own
`HF_MODULES_CACHE` (diffusers copies custom code there) and runs offline.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .compare import Difference, difference
from .equivalence import Equivalence, pipeline_outputs, silence_progress_bars


@dataclass(frozen=True)
class SavedAndLoaded:
    pipeline_class: str  # the class `ModularPipeline.from_pretrained` built
    pipeline_module: str  # where diffusers loaded it from
    blocks_class: str
    managed: tuple[str, ...]  # classes of the components the ComponentsManager holds after `load_components()`
    differences: dict[str, Difference]  # per standard output, against the standard pipeline

    @property
    def bitwise(self) -> bool:
        return all(diff.bitwise for diff in self.differences.values())


def saved_and_loaded(
    package_dir: str | Path, work_dir: str | Path, case: dict[str, Any] | None = None, workflow: str | None = None
):
    """Save the generated pipeline of `package_dir`, load it back in a fresh process and compare its outputs (a
    family's package: on the inputs of `workflow`, with that workflow's standard pipeline)."""
    import torch

    work = Path(work_dir)
    saved, exchanged = work / "saved", work / "exchanged.pt"
    equivalence = Equivalence(package_dir, workflow=workflow)
    components, inputs = equivalence.case_inputs(dict(case or {}))
    equivalence.pipeline(components, exact=False).save_pretrained(str(saved), overwrite_modular_index=True)
    handed = {"inputs": inputs, "seed": equivalence._seed, "generator": equivalence.takes_generator}
    torch.save({**handed, "workflow": workflow}, exchanged)
    environment = {
        **os.environ,
        "HF_MODULES_CACHE": str(work / "modules"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", __name__, str(saved), str(exchanged)]
    child = subprocess.run(command, env=environment, cwd=work, capture_output=True, text=True)
    if child.returncode != 0:
        raise RuntimeError(f"loading the saved pipeline failed:\n{child.stderr[-3000:]}")
    loaded = torch.load(exchanged, weights_only=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the child: the thread count changes the last bits of CPU kernels
    try:
        expected = equivalence.standard(components, inputs, exact=False)
    finally:
        torch.set_num_threads(threads)
    outputs = loaded["outputs"]
    return SavedAndLoaded(
        loaded["class"],
        loaded["module"],
        loaded["blocks"],
        tuple(loaded["managed"]),
        {name: difference(expected[name], outputs.get(name)) for name in expected},
    )


def load_and_run(saved: str, exchanged: str) -> None:
    """The child's side: diffusers loads the saved directory and runs the call the parent handed over."""
    import numpy as np
    import torch
    from diffusers.modular_pipelines import ComponentsManager, ModularPipeline

    torch.set_num_threads(1)  # as the parent's standard run
    handed = torch.load(exchanged, weights_only=False)
    manager = ComponentsManager()
    pipe = ModularPipeline.from_pretrained(saved, trust_remote_code=True, components_manager=manager)
    pipe.load_components()
    _realigned(pipe)
    silence_progress_bars(pipe)
    workflow = handed.get("workflow")
    kwargs = pipe.translate_standard_call(**handed["inputs"], **({"workflow": workflow} if workflow else {}))
    seed = handed["seed"]
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    if handed["generator"]:
        kwargs["generator"] = torch.Generator("cpu").manual_seed(seed)
    state = pipe(**kwargs)
    # a family's pipeline: the outputs of the workflow the inputs selected
    workflows = getattr(type(pipe), "workflow_pipelines", None)
    described = workflows[pipe.workflow_for(kwargs)] if workflows else type(pipe)
    outputs = pipeline_outputs(described, state)
    managed = sorted(type(component).__name__ for component in manager.components.values())
    result = {
        "class": type(pipe).__name__,
        "module": type(pipe).__module__,
        "blocks": type(pipe.blocks).__name__,
        "managed": managed,
        "outputs": outputs,
    }
    torch.save(result, exchanged)


def _realigned(pipe) -> None:
    """Every weight of the loaded models in memory of its own. Weights loaded from a file may sit at any byte offset
    (safetensors packs them one after another), and CPU kernels pick their vector paths by alignment: the same
    weights at another offset change the last bits of a matmul. The parent's models, built in memory, are aligned;
    so are these now, and the comparison is of the code alone."""
    import torch

    for name in pipe.components:
        model = getattr(pipe, name, None)
        if isinstance(model, torch.nn.Module):
            for tensor in (*model.parameters(), *model.buffers()):
                tensor.data = tensor.data.clone()


if __name__ == "__main__":
    load_and_run(*sys.argv[1:3])
