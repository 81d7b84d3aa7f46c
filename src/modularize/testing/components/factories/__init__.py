"""One factory per component class; importing this package registers them all."""

from . import audio, audioldm2, controlnets, denoisers, priors, schedulers, stand_ins, text, vaes, vision  # noqa: F401
