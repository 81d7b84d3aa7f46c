"""One factory per component class; importing this package registers them all."""

from . import (  # noqa: F401
    alt_diffusion,
    audio,
    audioldm2,
    chunked_video,
    controlnets,
    denoisers,
    glm_image,
    joy_image,
    krea2,
    longcat_audio,
    priors,
    schedulers,
    stand_ins,
    text,
    vaes,
    vision,
)
