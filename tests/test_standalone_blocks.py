"""Every block of a generated package runs alone on what it declares and gives the full run's outputs, bitwise; the
embeddings the text-encoder block computes alone, passed back in place of the text, give the same outputs.

The same check runs for every converted class with tiny components in `benchmarks/verify_by_class.py` (its
`blocks alone` figures); here for the packages a user reaches for first.
"""

import pytest

from modularize.cli import main
from modularize.frontend.source_file import installed_diffusers_file
from modularize.testing.standalone_blocks import blocks_alone, embeddings_fed_back

SOURCES = [
    "pipelines/stable_diffusion/pipeline_stable_diffusion.py",
    "pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py",
    "pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl_img2img.py",
    "pipelines/flux/pipeline_flux.py",
    "pipelines/qwenimage/pipeline_qwenimage.py",
]


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.rpartition("/")[2][: -len(".py")])
def test_every_block_runs_alone_on_its_declared_inputs(tmp_path, source):
    package = tmp_path / "package"
    assert main([str(installed_diffusers_file(source)), "-o", str(package), "-q"]) == 0
    results = blocks_alone(package)
    assert len(results) >= 4
    assert [(r.key, r.status, r.detail) for r in results if r.status != "equal"] == []


def test_a_block_reading_what_it_does_not_declare_fails_alone(toy_package):
    """The check can fail: a block that stops declaring an input it reads cannot run alone (the full run, where an
    earlier state holds the value, is unaffected)."""
    from modularize.commands.verify import load_package, package_classes

    _, blocks_cls = package_classes(load_package(toy_package))
    block_cls = blocks_cls.block_classes[0]
    declared, init_pipeline = block_cls.inputs, block_cls.init_pipeline

    def init_forgetting_an_input(self, *args, **kwargs):
        block_cls.inputs = property(lambda self: declared.fget(self)[1:])
        return init_pipeline(self, *args, **kwargs)

    block_cls.init_pipeline = init_forgetting_an_input
    try:
        results = blocks_alone(toy_package)
    finally:
        block_cls.inputs, block_cls.init_pipeline = declared, init_pipeline
    assert results[0].status == "failed" and "AttributeError" in results[0].detail
    assert all(r.status == "equal" for r in results[1:])


FED_BACK = {
    "pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py": "pooled_prompt_embeds",
    "pipelines/stable_diffusion_3/pipeline_stable_diffusion_3.py": "pooled_prompt_embeds",
    "pipelines/flux/pipeline_flux.py": "pooled_prompt_embeds",
    "pipelines/wan/pipeline_wan.py": "prompt_embeds",
    "pipelines/qwenimage/pipeline_qwenimage.py": "prompt_embeds_mask",
}


@pytest.mark.slow
@pytest.mark.parametrize("source", sorted(FED_BACK), ids=lambda s: s.rpartition("/")[2][: -len(".py")])
def test_embeddings_from_the_text_encoder_block_alone_fed_back_give_the_same_outputs(tmp_path, source):
    package = tmp_path / "package"
    assert main([str(installed_diffusers_file(source)), "-o", str(package), "-q"]) == 0
    result = embeddings_fed_back(package)
    assert "prompt_embeds" in result.fed and FED_BACK[source] in result.fed and "prompt" in result.dropped
    assert result.bitwise, result.differences
    doubled = embeddings_fed_back(package, scale=2.0)  # the check has teeth: other embeddings, other outputs
    assert not doubled.bitwise
