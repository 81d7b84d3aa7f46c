"""What `__init__` computes a derived attribute and a rebuilt component from (`frontend.derivation`)."""

from __future__ import annotations

import libcst as cst

from modularize.frontend.class_facts import analyze_init
from modularize.frontend.derivation import component_inputs, derivation_of
from modularize.frontend.parse import code

INIT = """\
def __init__(self, vae, unet, controlnet, scheduler, select_layers=None, patch_size: int = 2, unused=3):
    super().__init__()
    if isinstance(unet, UNet2DConditionModel):
        unet = UNetControlNetXSModel.from_unet(unet, controlnet)
    self.register_modules(vae=vae, unet=unet, controlnet=controlnet, scheduler=scheduler)
    if select_layers is None:
        select_layers = (2, 5, 8)
    other = 1
    self.select_layers = tuple(select_layers)
    self.patch_size = patch_size
    self.scale = 2 ** len(self.vae.block_out_channels) * self.patch_size
"""


def init_facts():
    return analyze_init(cst.parse_statement(INIT))


def test_a_derived_attribute_takes_the_statements_and_parameters_it_reads():
    found = derivation_of(init_facts(), "select_layers")
    assert [code(s).strip().splitlines()[0] for s in found.statements] == ["if select_layers is None:"]
    assert [p.name for p in found.parameters] == ["select_layers"]
    assert code(found.expression) == "tuple(select_layers)"


def test_a_derived_attribute_from_a_parameter_alone_and_one_from_components_and_attributes():
    init = init_facts()
    alone = derivation_of(init, "patch_size")
    assert (alone.statements, [(p.name, p.default) for p in alone.parameters]) == ((), [("patch_size", "2")])
    from_components = derivation_of(init, "scale")
    assert (from_components.statements, from_components.parameters) == ((), ())


def test_a_component_rebuilt_in_init_names_the_components_it_is_built_from():
    assert component_inputs(init_facts()) == {"unet": ("controlnet",)}
