"""A pipeline built of other pipelines: each one is the generated package of that pipeline, called as it was.

A standard pipeline that builds other pipelines from its components (`self.prior_pipe = KandinskyV22PriorPipeline(
prior=prior_prior, ...)` in `__init__`) and calls them in `__call__` becomes a package whose pipeline class has a
property per built pipeline. The property hands back the converted package of that pipeline, built on the same
components and called with the standard pipeline's arguments:

    @property
    def prior_pipe(self):
        return sub_pipeline(self, KandinskyV22PriorGeneratedBlocks, "diffusers...:KandinskyPriorPipelineOutput",
                            prior=self.prior_prior, ...)

    prior_outputs = components.prior_pipe(prompt=prompt, ..., return_dict=False)   # in a block, as in the source
"""

import importlib


class StandardCall:
    """A generated package's pipeline called as its standard pipeline is: the standard arguments in (guidance
    arguments install the guider that call guides with), the standard return value out (an output class, or the
    tuple `return_dict=False` asks for)."""

    def __init__(self, pipeline, output_class):
        self.pipeline = pipeline
        self.output_class = output_class

    def __call__(self, **kwargs):
        return_dict = kwargs.pop("return_dict", True)
        state = self.pipeline(**self.pipeline.translate_standard_call(**kwargs))
        fields = type(self.pipeline).standard_outputs
        values = tuple(state.get(name) for name in fields.values())
        if not return_dict or self.output_class is None:
            return values
        module, _, name = self.output_class.partition(":")
        output_class = getattr(importlib.import_module(module), name)
        return output_class(**dict(zip(fields, values, strict=True)))

    def __getattr__(self, name):
        # what the standard pipeline offers besides its call (`progress_bar`, `set_progress_bar_config`)
        return getattr(self.pipeline, name)


def sub_pipeline(owner, blocks_class, output_class, **components):
    """The pipeline of `blocks_class` on `components` (those given as `None` left to it), built once per set of
    components and kept on `owner`: a standard pipeline builds the pipelines it calls once, in `__init__`, and its
    progress bar configuration and per-call state live on them."""
    given = {name: value for name, value in components.items() if value is not None}
    # a setting of the owner's (`batch_guider_calls`) holds for the pipelines it calls that have it too
    settings = {name: getattr(owner, name, None) for name in getattr(owner, "_config_specs", {})}
    key = (blocks_class, tuple((name, id(value)) for name, value in given.items()), tuple(settings.items()))
    built = owner.__dict__.setdefault("_sub_pipelines", {})
    if key not in built:
        pipeline = blocks_class().init_pipeline()
        pipeline.update_components(**given)
        shared = {name: value for name, value in settings.items() if name in pipeline._config_specs}
        if shared:
            pipeline.update_components(**shared)
        built[key] = StandardCall(pipeline, output_class)
    return built[key]
