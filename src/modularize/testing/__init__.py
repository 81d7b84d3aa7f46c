"""Reusable pieces for proving a generated package equal to its standard pipeline.

`tiny` builds tiny offline components (no Hub), `exact` splits a reference model's CFG batches into half-batch
calls, `compare` measures differences between outputs. They need torch and diffusers (`modularize[verify]`);
nothing in the converter imports them.
"""
