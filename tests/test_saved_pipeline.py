"""`save_pretrained` -> `ModularPipeline.from_pretrained` in a fresh process: the generated classes, the same outputs.

diffusers looks a saved pipeline's classes up by name; a generated package's saved directory carries its code, so
diffusers alone (with `trust_remote_code=True`, offline) builds the package's own class, not its hand-written one.
"""

import pytest

from modularize.cli import main
from modularize.frontend.source_file import installed_diffusers_file
from modularize.testing.saved_pipeline import saved_and_loaded

SOURCES = {
    "StableDiffusionXL": "pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py",
    "StableDiffusion3": "pipelines/stable_diffusion_3/pipeline_stable_diffusion_3.py",
    "Flux": "pipelines/flux/pipeline_flux.py",
    "Wan": "pipelines/wan/pipeline_wan.py",
    "QwenImage": "pipelines/qwenimage/pipeline_qwenimage.py",
}


@pytest.mark.slow
@pytest.mark.parametrize("prefix", sorted(SOURCES))
def test_saved_pipeline_loads_back_as_the_generated_class_with_the_same_outputs(tmp_path, prefix):
    package = tmp_path / "package"
    assert main([str(installed_diffusers_file(SOURCES[prefix])), "-o", str(package), "-q"]) == 0
    result = saved_and_loaded(package, tmp_path)
    assert result.pipeline_class == f"{prefix}GeneratedModularPipeline"
    assert result.pipeline_module.startswith("diffusers_modules."), "loaded from the saved directory's code"
    assert result.blocks_class == f"{prefix}GeneratedBlocks"
    assert result.managed, "load_components() registered nothing with the ComponentsManager"
    assert result.bitwise, result.differences
