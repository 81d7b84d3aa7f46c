"""Emit pass: `PipelinePlan` -> `{relative path: source text}` of a modular pipeline package."""
