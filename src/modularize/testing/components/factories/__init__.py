"""One factory per component class; importing this package registers them all."""

from . import (  # noqa: F401
    alt_diffusion,
    animatediff,
    audio,
    audioldm2,
    chunked_video,
    controlnets,
    denoisers,
    glm_image,
    joy_image,
    kandinsky5,
    kandinsky6,
    krea2,
    longcat_audio,
    priors,
    sana_wm,
    schedulers,
    stand_ins,
    text,
    vaes,
    vision,
)
