"""modularize: convert a standard diffusers pipeline into a modular pipeline package, and prove them equal."""

__version__ = "0.1.0"
