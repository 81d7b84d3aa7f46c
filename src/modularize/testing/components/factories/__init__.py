"""One factory per component class; importing this package registers them all."""

from . import audio, controlnets, denoisers, glm_image, joy_image, priors, schedulers, stand_ins, text, vaes, vision  # noqa: F401
