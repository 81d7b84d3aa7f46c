"""Installing the guider a standard pipeline call would guide with, without overriding the user's own guider.

Why this exists: a generated pipeline accepts the standard call's guidance arguments (`guidance_scale`,
`guidance_rescale`, `true_cfg_scale`, ...) and turns them into the guider the standard pipeline would have used
(`guider_for_standard_call`). A guider the user installed (`update_components(guider=...)`, a perturbed-attention or
skip-layer guider, a configured rescale) is theirs: a call must not silently replace it. Every generated
`modular_pipeline.py` of a guided pipeline carries `install_standard_guider` (copied by name, with a
`# Copied from modularize.emit.runtime.standard_guider.install_standard_guider` line).
"""


def install_standard_guider(pipeline, kwargs, strict):
    """Install `pipeline.guider_for_standard_call(...)` for the guidance arguments in `kwargs`.

    `strict` (`translate_standard_call`): always, the caller asked for the standard call. Otherwise (a call of the
    pipeline with standard arguments) only when the installed guider is the pipeline's own (its default one, or one
    this function installed) and an argument passed differs from the one it was installed with; the arguments not
    passed keep the values it was installed with. With a guider the user
    installed, arguments the blocks read too (`negative_prompt`) are left to the blocks; one only the guider would
    take (it would be ignored), or one the user's guider holds another value for, raises. A pipeline whose blocks
    have no guider (one built from a single block) has nothing to install: the arguments go to the blocks.
    """
    if "guider" not in pipeline._component_specs:
        return
    guider_kwargs = {name: kwargs[name] for name in pipeline.guider_arguments if name in kwargs}
    own = getattr(pipeline, "_own_guider", None)
    guider = getattr(pipeline, "guider", None)
    if not strict and guider is not own:
        config = getattr(guider, "config", {})
        ignored = sorted(
            name
            for name, value in guider_kwargs.items()
            if name not in pipeline.block_arguments or (name in config and config[name] != value)
        )
        if ignored:
            raise ValueError(
                f"{ignored} would configure the guider, but this pipeline guides with one you installed "
                f"({type(pipeline.guider).__name__}): set them on that guider, or install the standard one with "
                f"`pipeline.update_components(guider=pipeline.guider_for_standard_call(...))`"
            )
        return
    installed = getattr(pipeline, "_guider_call_arguments", None)
    # arguments left out keep the guider as it is: `pipeline(**translate_standard_call(...))` passes on only those
    # the blocks read too (`negative_prompt`, not `true_cfg_scale`), and must keep the guider just installed; and a
    # guider installed anew for a changed argument keeps the values the others were installed with (a call passing
    # only `guidance_scale` does not reset the `guidance_rescale` an earlier call set)
    if not strict and installed is not None:
        guider_kwargs = {**installed, **guider_kwargs}
    if strict or installed is None or any(installed.get(name) != value for name, value in guider_kwargs.items()):
        guider = pipeline.guider_for_standard_call(**guider_kwargs)
        pipeline.update_components(guider=guider)
        pipeline._own_guider = guider
        pipeline._guider_call_arguments = guider_kwargs
