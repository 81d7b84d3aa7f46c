"""Pipelines made of pipelines: a `__call__` that calls pipelines `__init__` built from the components becomes a
package holding the converted packages of those pipelines, each in its own folder, called as the standard ones."""

from __future__ import annotations

import pytest

from modularize.cli import main
from modularize.convert import ConvertOptions, convert
from modularize.errors import ConversionError
from modularize.frontend.source_file import installed_diffusers_file, read_source

COMBINED = "pipelines/kandinsky2_2/pipeline_kandinsky2_2_combined.py"


def _combined_files(class_name: str = "KandinskyV22CombinedPipeline") -> dict[str, str]:
    from modularize.frontend.source_file import module_reader

    path = installed_diffusers_file(COMBINED)
    source = read_source(str(path))
    options = ConvertOptions(str(path), source.label, source.module_name, class_name)
    return convert(source.text, options, module_reader(path))


def test_each_built_pipeline_is_a_package_of_its_own_beside_the_pipelines_modules():
    files = _combined_files()
    # diffusers loads a saved package's modules from one directory: the built pipelines' are named by attribute
    assert all("/" not in name for name in files)
    assert {name.split("_pipe_")[0] for name in files if "_pipe_" in name} == {"prior", "decoder"}
    assert "prior_pipe_modular_pipeline.py" in files and "prior_pipe___init__.py" not in files
    # each is the package its own source converts to, recorded in its headers
    assert (
        "modularize-source: diffusers/pipelines/kandinsky2_2/pipeline_kandinsky2_2_prior.py"
        in (files["prior_pipe_modular_pipeline.py"])
    )
    pipeline_module = files["modular_pipeline.py"]
    assert "from .prior_pipe_modular_blocks_kandinsky_v22prior import KandinskyV22PriorGeneratedBlocks" in (
        pipeline_module
    )
    assert 'built_pipelines = (\n        "prior_pipe",\n        "decoder_pipe",\n    )' in pipeline_module
    assert "KandinskyV22PriorPipeline(" not in pipeline_module  # the standard pipelines are not built
    # each call of a built pipeline is a block of its own, named by it; the glue between them too
    blocks = files["modular_blocks_kandinsky_v22combined.py"]
    order = [blocks.index(f'("{key}", ') for key in ("prior_pipe", "after_prior_pipe", "decoder_pipe")]
    assert order == sorted(order)
    assert files == _combined_files()  # deterministic


def test_without_the_built_pipelines_source_the_conversion_is_refused():
    path = installed_diffusers_file(COMBINED)
    source = read_source(str(path))
    options = ConvertOptions(str(path), source.label, source.module_name, "KandinskyV22CombinedPipeline")
    with pytest.raises(ConversionError, match="`self.prior_pipe` is a `KandinskyV22PriorPipeline` built from"):
        convert(source.text, options)


PART = """\
from diffusers import DiffusionPipeline


class PartPipeline(DiffusionPipeline):
    def __init__(self, unet, scheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    def __call__(self, latents):
        for t in self.scheduler.timesteps:
            latents = self.scheduler.step(self.unet(latents, t), t, latents)
            break
        return (latents,)
"""
WHOLE = """\
from diffusers import DiffusionPipeline

from .pipeline_part import PartPipeline


class WholePipeline(DiffusionPipeline):
    def __init__(self, unet, scheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.part = PartPipeline(unet=unet, scheduler=scheduler)

    def __call__(self, latents):
        latents = self.part(latents=latents)[0]
        return (latents,)
"""


def test_a_built_pipeline_that_cannot_be_converted_names_its_own_blocker(cli, tmp_path):
    tree = tmp_path / "mine"
    tree.mkdir()
    (tree / "__init__.py").write_text("")
    (tree / "pipeline_part.py").write_text(PART)
    (tree / "pipeline_whole.py").write_text(WHOLE)
    run = cli(tree / "pipeline_whole.py", "-o", tmp_path / "pkg")
    assert run.code == 3
    assert (
        "pipeline_whole.py:10:21: `self.part` is a `PartPipeline` built from the components, which cannot" in run.err
    )
    assert "pipeline_part.py:12:13: `break` in the denoising loop" in run.err  # where its own blocker is
    assert not (tmp_path / "pkg").exists()


def test_a_written_package_of_packages_is_rewritten_and_checked(cli, tmp_path, monkeypatch):
    source = installed_diffusers_file(COMBINED)
    package = tmp_path / "modular_combined"
    arguments = [str(source), "--class", "KandinskyV22CombinedPipeline", "-o", str(package), "-q"]
    assert main(arguments) == 0
    assert main(arguments) == 0  # its folders come from other sources, and are its own all the same
    assert main([*arguments, "--check"]) == 0
    monkeypatch.chdir(tmp_path)
    run = cli("check", "modular_combined")
    assert run.code == 0 and "1 generated package(s) up to date" in run.out


@pytest.mark.slow
@pytest.mark.parametrize("class_name", ["KandinskyV22CombinedPipeline", "KandinskyV22Img2ImgCombinedPipeline"])
def test_combined_pipelines_verify_bitwise_plain_and_exact(tmp_path, class_name):
    from modularize.commands.verify import verify_package
    from modularize.testing import exact

    package = tmp_path / "pkg"
    assert main([str(installed_diffusers_file(COMBINED)), "--class", class_name, "-o", str(package), "-q"]) == 0
    split = []
    original = exact.half_batch_calls

    def spy(model, enabled=False, *args, **kwargs):
        split.append((type(model).__name__, enabled))
        return original(model, enabled, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exact, "half_batch_calls", spy)
        report = verify_package(package, exact=True)
    assert report.ok, report
    assert {c.mode for c in report.cases} == {"plain", "exact"}
    assert all(c.bitwise for c in report.cases)
    assert {"default", "cfg_off"} <= {c.name for c in report.cases}
    # exact mode split both built pipelines' denoisers per guider batch, not only the outer pipeline's
    assert ("PriorTransformer", True) in split and ("UNet2DConditionModel", True) in split


@pytest.mark.slow
def test_a_saved_pipeline_made_of_pipelines_loads_with_diffusers_alone(tmp_path):
    """`save_pretrained` writes the built pipelines' modules too, and the blocks module imports one class of each, so
    `ModularPipeline.from_pretrained(..., trust_remote_code=True)` in a fresh process copies and loads them."""
    from modularize.testing.saved_pipeline import saved_and_loaded

    package = tmp_path / "pkg"
    source = installed_diffusers_file(COMBINED)
    assert main([str(source), "--class", "KandinskyV22CombinedPipeline", "-o", str(package), "-q"]) == 0
    result = saved_and_loaded(package, tmp_path / "work")
    assert result.pipeline_class == "KandinskyV22CombinedGeneratedModularPipeline"
    assert all(d.bitwise for d in result.differences.values()), result.differences
