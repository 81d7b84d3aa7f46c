"""The denoising loop's header read by position (`analysis/loop_header.py`), and the index given to a loop
without one."""

from __future__ import annotations

import libcst as cst
import pytest

from modularize.analysis.loop_header import fresh_name, loop_header, with_step_index
from modularize.analysis.segment import is_timestep_loop


def _loop(header: str, body: str = "x = self.scheduler.step(pred, t, x).prev_sample") -> cst.For:
    return cst.parse_statement(f"{header}\n    {body}\n")


@pytest.mark.parametrize(
    ("header", "step", "timestep", "sequence"),
    [
        ("for i, t in enumerate(timesteps):", "i", "t", "timesteps"),
        ("for i, t in enumerate(self.progress_bar(timesteps)):", "i", "t", "timesteps"),
        ("for k, tick in self.progress_bar(enumerate(ticks)):", "k", "tick", "ticks"),
        ("for t in self.progress_bar(schedule):", None, "t", "schedule"),
        ("for t in tqdm(self.clock.timesteps):", None, "t", "self.clock.timesteps"),
        ("for i, (t, sigma) in enumerate(zip(timesteps, sigmas)):", "i", None, "zip(timesteps, sigmas)"),
        # a start other than 0 is not the guider's step count: the loop gets an index of its own
        ("for i, t in enumerate(timesteps, start=1):", None, None, "enumerate(timesteps, start=1)"),
    ],
)
def test_the_header_is_read_by_position(header, step, timestep, sequence):
    found = loop_header(_loop(header))
    assert (found.step, found.timestep) == (step, timestep)
    assert cst.Module(body=[]).code_for_node(found.sequence) == sequence


def test_a_loop_without_an_index_is_enumerated():
    loop = with_step_index(_loop("for t in self.progress_bar(schedule):"), "step_index")
    assert cst.Module(body=[loop]).code.splitlines()[0] == (
        "for step_index, t in enumerate(self.progress_bar(schedule)):"
    )
    assert loop_header(loop).step == "step_index" and loop_header(loop).timestep == "t"


def test_fresh_names_avoid_what_is_taken():
    assert fresh_name("step_index", {"i", "t"}) == "step_index"
    assert fresh_name("step_index", {"step_index", "step_index_2"}) == "step_index_3"


@pytest.mark.parametrize(
    ("statement", "is_loop"),
    [
        ("for i, t in enumerate(timesteps):\n    pass\n", True),  # diffusers' spelling
        ("for t in schedule:\n    x = self.clock.step(g, t, x).prev_sample\n", True),  # what it does
        ("for t in schedule:\n    keep.append(t)\n", False),  # a loop that steps nothing
        # an outer loop around the denoising loop does not step the scheduler itself
        ("for k in range(2):\n    for t in ts:\n        x = self.clock.step(g, t, x).prev_sample\n", False),
    ],
)
def test_the_denoising_loop_is_recognized_by_stepping_a_scheduler(statement, is_loop):
    assert is_timestep_loop(cst.parse_statement(statement)) is is_loop
