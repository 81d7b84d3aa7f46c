"""Guider batches run as one model call when that is valid, and one call per batch when it is not."""

import copy

import pytest
import torch

from modularize.cli import main
from modularize.commands.verify import load_package, package_classes, standard_class
from modularize.frontend.source_file import installed_diffusers_file
from modularize.testing.compare import difference
from modularize.testing.exact import half_batch_calls
from modularize.testing.tiny import setup_for

# every test here runs torch pipelines end to end
pytestmark = pytest.mark.slow

CALL = {"prompt": ["a cat", "a dog"], "num_inference_steps": 2, "output_type": "np"}


def hooking(guider_cls):
    """A guider that changes the model between batches, the way perturbed-attention or skip-layer guiders do (here
    it only records the batches it prepared): its batches must not be merged into one model call."""

    def prepare_models(self, denoiser):
        guider_cls.prepare_models(self, denoiser)
        self.prepared.append(self._count_prepared)

    return type(f"Hooking{guider_cls.__name__}", (guider_cls,), {"prepare_models": prepare_models, "prepared": []})


def spy_batches(model) -> list[int]:
    """The batch size of every call to `model` (a batch given as a list of samples counts its samples)."""
    batches: list[int] = []
    forward = model.forward

    def spy(sample, *args, **kwargs):
        batches.append(len(sample) if isinstance(sample, list) else sample.shape[0])
        return forward(sample, *args, **kwargs)

    model.forward = spy
    return batches


def run_both(package, denoiser, hooked=False, exact=False):
    """(denoiser batch sizes of the modular run, its difference from the standard pipeline, the guider used)."""
    pipeline_cls, blocks_cls = package_classes(load_package(package))
    setup = setup_for(pipeline_cls.standard_pipeline.rsplit(".", 1)[1])
    modular = pipeline_cls(blocks=blocks_cls())
    modular.update_components(**{k: v for k, v in setup.components().items() if k in modular._component_specs})
    modular.set_progress_bar_config(disable=True)
    call = {**setup.inputs(), **CALL}
    # a pipeline may change what it is given (Z-Image templates a list of prompts in place): each gets its own
    kwargs = modular.translate_standard_call(**copy.deepcopy(call))
    if hooked:
        modular.update_components(guider=hooking(type(modular.guider)).from_config(modular.guider.config))
    batches = spy_batches(getattr(modular, denoiser))
    output = modular(**kwargs, generator=torch.Generator().manual_seed(0), output="images")

    standard = standard_class(pipeline_cls, package)(**setup.components())
    standard.set_progress_bar_config(disable=True)
    with half_batch_calls(getattr(standard, denoiser), enabled=exact):
        reference = standard(**call, generator=torch.Generator().manual_seed(0)).images
    return batches, difference(reference, output), modular.guider


@pytest.fixture(scope="module")
def z_image_package(tmp_path_factory):
    out = tmp_path_factory.mktemp("z_image") / "modular_z_image"
    assert main([str(installed_diffusers_file("pipelines/z_image/pipeline_z_image.py")), "-o", str(out), "-q"]) == 0
    return out


def test_cfg_batches_merge_into_one_call_and_match_the_standard_pipeline_bitwise(sd_package):
    batches, diff, _ = run_both(sd_package, "unet")
    assert batches == [4, 4, 4]  # 3 PNDM iterations, one call on [uncond x2, cond x2] each
    assert diff.bitwise


def test_a_guider_that_hooks_the_model_falls_back_to_one_call_per_batch(sd_package):
    batches, diff, guider = run_both(sd_package, "unet", hooked=True, exact=True)
    assert batches == [2] * 6  # two calls per iteration, one per guider batch
    assert guider.prepared == [1, 2] * 3  # the guider saw every batch prepared on its own
    assert diff.bitwise  # equal to the standard pipeline run as half-batch calls


def test_branched_cfg_merges_each_batchs_call_arguments(z_image_package):
    """Z-Image writes its CFG-off inputs out (`else:` branch) and gives the transformer lists of samples: each
    guider batch prepares its own arguments, which are joined into the one call the standard pipeline made."""
    batches, diff, _ = run_both(z_image_package, "transformer")
    assert batches == [4, 4]  # 2 steps, one call on [cond x2, uncond x2] each
    assert diff.bitwise


def test_branched_cfg_falls_back_to_one_call_per_batch_for_a_hooking_guider(z_image_package):
    batches, diff, guider = run_both(z_image_package, "transformer", hooked=True, exact=True)
    assert batches == [2] * 4
    assert guider.prepared == [1, 2] * 2
    assert diff.bitwise
