"""Blocks that keep a standard `__call__` argument passed as `None`.

Why this exists: diffusers' `ModularPipelineBlocks.get_block_state` turns a `None` input into the input's declared
default, where a standard pipeline sees the `None` it was given (and may mean something by it). Every generated
`modular_pipeline.py` carries `ExplicitNoneInputs` (copied by name, with a
`# Copied from modularize.emit.runtime.explicit_none.ExplicitNoneInputs` line); blocks taking an argument whose
default is not `None` list it first among their bases.
"""


class ExplicitNoneInputs:
    """Block mixin: a standard `__call__` argument passed as `None` stays `None`.

    `ModularPipelineBlocks.get_block_state` replaces a `None` input by the input's declared default, where the
    standard pipeline sees the `None` it was given (`complex_human_instruction=None` turns an instruction off). A
    modular pipeline puts every input in its state (the default when it was not passed), so a `None` found there
    was passed.
    """

    def get_block_state(self, state):
        block_state = super().get_block_state(state)
        for param in self.inputs:
            if param.name and param.default is not None and state.values.get(param.name, param.default) is None:
                setattr(block_state, param.name, None)
        return block_state
