"""pytest plugin (entry point `modularize`): registers modularize's hypothesis profiles before pytest reads
`--hypothesis-profile`, so `pytest --hypothesis-profile=modularize-ci` works for generated equivalence tests."""

from __future__ import annotations

try:  # the base install has no hypothesis; only the test extras do
    from . import strategies  # noqa: F401  (importing registers the profiles)
except ImportError:  # pragma: no cover
    pass
