"""One factory per component class; importing this package registers them all."""

from . import (  # noqa: F401
    alt_diffusion,
    audio,
    controlnets,
    denoisers,
    krea2,
    priors,
    schedulers,
    stand_ins,
    text,
    vaes,
    vision,
)
