"""Tiny offline components built by component class, so verification follows the converter to any pipeline.

    setup = setup_by_class(StableDiffusionPipeline)    # a TinySetup: components, inputs, cases
    components = build_components(FluxPipeline)        # the constructor's keyword arguments

A pipeline's components come from its constructor's type hints (`resolve`), each built by the factory of its class
(`factories/`) from one shared set of tiny dimensions (`dims.DIMS`) that computes the couplings between them.
What the hints cannot say is data in `overrides.OVERRIDES`, never a function. A class no factory builds makes
`build_components` raise `MissingComponentClass`, which names it.
"""

from .build import MissingComponentClass, build_components, missing_classes, setup_by_class
from .dims import DIMS, Dims
from .registry import FACTORIES, Need, factory, factory_for

__all__ = [
    "DIMS",
    "FACTORIES",
    "Dims",
    "MissingComponentClass",
    "Need",
    "build_components",
    "factory",
    "factory_for",
    "missing_classes",
    "setup_by_class",
]
