"""One factory per component class; importing this package registers them all."""

from . import controlnets, denoisers, schedulers, stand_ins, text, vaes, vision  # noqa: F401
