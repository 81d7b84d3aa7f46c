"""One factory per component class; importing this package registers them all."""

from . import (  # noqa: F401
    audio,
    audioldm2,
    controlnets,
    denoisers,
    glm_image,
    joy_image,
    priors,
    schedulers,
    stand_ins,
    text,
    vaes,
    vision,
)
