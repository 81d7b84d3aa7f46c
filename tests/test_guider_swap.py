"""Any diffusers guider that applies to the model runs a generated package: batch names come from the guider.

A skip-layer or perturbed-attention guider adds batches (`pred_cond_skip`) the standard pipeline has no pass for;
whether the model supports its hooks at all is diffusers' matter, so each guider is first tried on the standard
pipeline's own model (its hook applied, the standard call run): where that fails, the model does not support it.
"""

import numpy as np
import pytest
import torch

from modularize.cli import main
from modularize.frontend.source_file import installed_diffusers_file
from modularize.testing.compare import as_array
from modularize.testing.equivalence import Equivalence

SOURCES = {
    "sdxl": "pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py",
    "sd3": "pipelines/stable_diffusion_3/pipeline_stable_diffusion_3.py",
    "flux": "pipelines/flux/pipeline_flux.py",
    "wan": "pipelines/wan/pipeline_wan.py",
    "qwenimage": "pipelines/qwenimage/pipeline_qwenimage.py",
}


def guiders():
    from diffusers.guiders import (
        AdaptiveProjectedGuidance,
        ClassifierFreeGuidance,
        PerturbedAttentionGuidance,
        SkipLayerGuidance,
    )
    from diffusers.hooks import LayerSkipConfig

    skip = LayerSkipConfig(indices=[0], fqn="auto")
    scores = LayerSkipConfig(indices=[0], fqn="auto", skip_attention=False, skip_attention_scores=True, skip_ff=False)
    return {
        "cfg": (lambda: ClassifierFreeGuidance(guidance_scale=5.0), None),
        "apg": (lambda: AdaptiveProjectedGuidance(guidance_scale=5.0), None),
        "slg": (
            lambda: SkipLayerGuidance(5.0, 2.0, skip_layer_guidance_stop=1.0, skip_layer_config=skip),
            skip,
        ),
        "pag": (
            lambda: PerturbedAttentionGuidance(
                5.0, 2.0, perturbed_guidance_stop=1.0, perturbed_guidance_config=scores
            ),
            scores,
        ),
    }


def model_supports(equivalence, components, inputs, config) -> bool:
    """The standard pipeline runs with the guider's hook applied to its denoiser."""
    from diffusers.hooks.layer_skip import apply_layer_skip

    if config is None:
        return True
    pipe = equivalence.standard_cls(**components)
    pipe.set_progress_bar_config(disable=True)
    model = getattr(pipe, equivalence.pipeline_cls.denoiser_name)
    copy = type(model).from_config(model.config)
    copy.load_state_dict(model.state_dict())
    setattr(pipe, equivalence.pipeline_cls.denoiser_name, copy)
    try:
        apply_layer_skip(copy, config)
        pipe(**inputs, generator=torch.Generator().manual_seed(0))
    except Exception:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SOURCES))
def test_diffusers_guiders_run_the_package_where_the_model_supports_them(tmp_path, name):
    package = tmp_path / "package"
    assert main([str(installed_diffusers_file(SOURCES[name])), "-o", str(package), "-q"]) == 0
    equivalence = Equivalence(package)
    components, inputs = equivalence.case_inputs({"negative_prompt": "a blurry picture"})
    outputs, unsupported = {}, []
    for kind, (make, hook) in guiders().items():
        if not model_supports(equivalence, components, inputs, hook):
            unsupported.append(kind)
            continue
        pipe = equivalence.pipeline(components, exact=False)
        pipe.update_components(guider=make())
        # the call without what configures the standard guider (the installed one holds its own scale), with the
        # negative prompt: an unconditional batch needs it, and the blocks read it
        kwargs = {
            k: v
            for k, v in inputs.items()
            if k in pipe.block_arguments and (k not in pipe.guider_arguments or k == "negative_prompt")
        }
        state = pipe(**kwargs, generator=torch.Generator().manual_seed(0))
        outputs[kind] = as_array(state.get(next(iter(pipe.standard_outputs.values())))).astype(np.float64)
        assert np.isfinite(outputs[kind]).all(), kind
    assert "cfg" in outputs and "apg" in outputs
    for kind in ("slg", "pag"):
        if kind in outputs:  # the extra batch ran: the result is not plain CFG's
            assert np.abs(outputs[kind] - outputs["cfg"]).max() > 1e-4, kind
    # diffusers 0.42.1's hooks support Wan's blocks for skip-layer and QwenImage's attention for PAG: those ran
    assert {"wan": "slg", "qwenimage": "pag"}.get(name, "cfg") in outputs, unsupported
