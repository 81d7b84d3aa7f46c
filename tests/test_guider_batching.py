"""Guider batches run as one model call when that is valid, and one call per batch when it is not."""

import torch
from diffusers.guiders import ClassifierFreeGuidance

from modularize.testing.compare import difference
from modularize.testing.exact import half_batch_calls
from modularize.testing.tiny import stable_diffusion_components
from modularize.verify import load_package, package_classes, standard_class


class HookingGuidance(ClassifierFreeGuidance):
    """Changes the model between batches, the way perturbed-attention or skip-layer guiders do (here it only
    records the calls): its batches must not be merged into one model call."""

    prepared: list[int] = []

    def prepare_models(self, denoiser):
        super().prepare_models(denoiser)
        HookingGuidance.prepared.append(self._count_prepared)


def run_both(package, guider_cls=None, exact=False):
    pipeline_cls, blocks_cls = package_classes(load_package(package))
    components = stable_diffusion_components()
    batches: list[int] = []

    def counted(unet):
        forward = unet.forward

        def spy(sample, *args, **kwargs):
            batches.append(sample.shape[0])
            return forward(sample, *args, **kwargs)

        unet.forward = spy

    modular = pipeline_cls(blocks=blocks_cls())
    modular.update_components(**{k: v for k, v in components.items() if k in modular._component_specs})
    modular.set_progress_bar_config(disable=True)
    kwargs = modular.translate_standard_call(prompt=["a cat", "a dog"], num_inference_steps=2, output_type="np")
    if guider_cls is not None:
        modular.update_components(guider=guider_cls.from_config(modular.guider.config))
    counted(modular.unet)
    images = modular(**kwargs, generator=torch.Generator().manual_seed(0), output="images")

    standard = standard_class(pipeline_cls, package)(**stable_diffusion_components())
    standard.set_progress_bar_config(disable=True)
    with half_batch_calls(standard.unet, enabled=exact):
        reference = standard(
            prompt=["a cat", "a dog"],
            num_inference_steps=2,
            output_type="np",
            generator=torch.Generator().manual_seed(0),
        ).images
    return batches, difference(reference, images)


def test_cfg_batches_merge_into_one_call_and_match_the_standard_pipeline_bitwise(sd_package):
    batches, diff = run_both(sd_package)
    assert batches == [4, 4, 4]  # 3 PNDM iterations, one call on [uncond x2, cond x2] each
    assert diff.bitwise


def test_a_guider_that_hooks_the_model_falls_back_to_one_call_per_batch(sd_package):
    HookingGuidance.prepared.clear()
    batches, diff = run_both(sd_package, HookingGuidance, exact=True)
    assert batches == [2] * 6  # two calls per iteration, one per guider batch
    assert HookingGuidance.prepared == [1, 2] * 3  # the guider saw every batch prepared on its own
    assert diff.bitwise  # equal to the standard pipeline run as half-batch calls
