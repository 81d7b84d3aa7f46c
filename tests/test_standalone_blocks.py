"""Every block of a generated package runs alone on what it declares and gives the full run's outputs, bitwise.

The same check runs for every converted class with tiny components in `benchmarks/verify_by_class.py` (its
`blocks alone` figures); here for the packages a user reaches for first.
"""

import pytest

from modularize.cli import main
from modularize.frontend.source_file import installed_diffusers_file
from modularize.testing.standalone_blocks import blocks_alone

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
