"""Blocks whose `init_pipeline` builds their own package's pipeline class.

Why this exists: `ModularPipelineBlocks.init_pipeline` picks the pipeline class through diffusers' own mapping from
`model_name` to one of diffusers' classes, so the blocks of a generated package would get the generic
`ModularPipeline` (or, under a model name diffusers knows, its hand-written class), which lacks what the blocks
read from it (derived attributes, the guider set-up). Every generated `modular_pipeline.py` carries `PackageBlocks`
(copied by name, with a `# Copied from modularize.emit.runtime.package_blocks.PackageBlocks` line); every block class
of the package lists it first among its bases and names the package's pipeline class in `modular_pipeline_class`.
"""

from copy import deepcopy


class PackageBlocks:
    """Block mixin: `init_pipeline()` builds the package's own `ModularPipeline` subclass around a copy of the
    blocks, as `ModularPipelineBlocks.init_pipeline` builds diffusers' classes around theirs."""

    modular_pipeline_class = None  # the package's ModularPipeline subclass, named by each block class

    def init_pipeline(self, pretrained_model_name_or_path=None, components_manager=None, collection=None):
        return self.modular_pipeline_class(
            blocks=deepcopy(self),
            pretrained_model_name_or_path=pretrained_model_name_or_path,
            components_manager=components_manager,
            collection=collection,
        )
