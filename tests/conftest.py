"""Shared fixtures: the installed Stable Diffusion source, packages converted once per session, a CLI runner."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from modularize.cli import main
from modularize.frontend.source_file import installed_diffusers_file

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
TOY = FIXTURES / "pipelines" / "pipeline_toy.py"
SD_RELATIVE = "pipelines/stable_diffusion/pipeline_stable_diffusion.py"


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    def run(*args: str) -> Run:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def sd_source() -> Path:
    return installed_diffusers_file(SD_RELATIVE)


@pytest.fixture(scope="session")
def sd_package(tmp_path_factory, sd_source) -> Path:
    out = tmp_path_factory.mktemp("sd") / "modular_stable_diffusion"
    assert main([str(sd_source), "-o", str(out), "-q"]) == 0
    return out


@pytest.fixture(scope="session")
def toy_package(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toy") / "modular_toy"
    assert main([str(TOY), "-o", str(out), "-q"]) == 0
    return out


@pytest.fixture
def toy_on_path(monkeypatch):
    """Lets `verify` import the toy standard pipeline (`pipeline_toy`) the way a user's repository would."""
    monkeypatch.syspath_prepend(str(TOY.parent))


def outputs_of_every_case(cls: type, to_array) -> dict:
    """The standard pipeline `cls` on its by-class setup, run once per case (fresh components each, a seeded
    generator where it takes one): {case: `to_array(output)`}, each finite and not constant."""
    import inspect

    import numpy as np
    import torch

    from modularize.testing.components import setup_by_class

    setup = setup_by_class(cls)
    assert len(setup.cases) > 1
    outputs = {}
    for case, overrides in setup.cases:
        pipe = cls(**setup.components())
        pipe.set_progress_bar_config(disable=True)
        inputs = {**setup.inputs(), **overrides}
        if "generator" in inspect.signature(cls.__call__).parameters:
            inputs["generator"] = torch.Generator().manual_seed(0)
        output = to_array(pipe(**inputs))
        assert np.isfinite(output).all() and output.std() > 0, case
        outputs[case] = output
    return outputs


def diffusers_class(name: str) -> type:
    import diffusers

    return getattr(diffusers, name)


def pipeline_by_class(name: str):
    """The standard pipeline `name` on its by-class components, progress bars off."""
    from modularize.testing.components import build_components

    cls = diffusers_class(name)
    pipe = cls(**build_components(cls))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def seeded_noise(*shape: int, seed: int):
    import torch

    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
