"""`modularize emit-tests`: a pytest file that keeps proving a generated package equal to its standard pipeline.

The file is short because the machinery lives in `modularize.testing`: it names the package, the components and
a fixed matrix of cases, then asserts exact mode bitwise and plain mode within 1e-5 for each, and lets hypothesis
draw further standard calls from the pipeline's own arguments (both pipelines must accept and agree, or both
reject). It runs serially or under `pytest -n auto`.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from ..emit.format import format_python
from ..emit.header import read_header
from ..errors import EXIT_OK, InputError, Location

TEMPLATE = '''"""Equivalence tests for the generated package `{package}` (converted from `{pipeline}`).

Written by `modularize emit-tests`; regenerate it rather than edit it. Run it with `pytest {file}`; add `-n auto`
to spread it over cores (pytest-xdist) and `--hypothesis-profile=modularize-ci` for a longer randomized run.
"""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modularize.testing.equivalence import Equivalence
from modularize.testing.standalone_blocks import blocks_alone
from modularize.testing.strategies import budget, standard_call_inputs

PACKAGE = Path(__file__).parent / {package_path!r}
# `None`: modularize's built-in tiny components; else "module:function" returning the constructor arguments
COMPONENTS = {components!r}
# (case name, the call's arguments over the defaults; None: the built-in case of that name, which holds tensors)
MATRIX = {matrix}


@pytest.fixture(scope="module")
def equivalence():
    return Equivalence(PACKAGE, COMPONENTS)


@pytest.mark.parametrize("name, inputs", MATRIX, ids=[name for name, _ in MATRIX])
def test_exact_mode_is_bitwise_equal(equivalence, name, inputs):
    equivalence.assert_equivalent(equivalence.built_in_case(name) if inputs is None else inputs, mode="exact")


@pytest.mark.parametrize("name, inputs", MATRIX, ids=[name for name, _ in MATRIX])
def test_plain_mode_is_within_tolerance(equivalence, name, inputs):
    inputs = equivalence.built_in_case(name) if inputs is None else inputs
    equivalence.assert_equivalent(inputs, mode="plain", atol=1e-5)


def test_every_block_runs_alone_on_what_it_declares(equivalence):
    """Each block on a fresh pipeline, with the inputs it declares taken from a full run: the full run's outputs."""
    assert [(r.key, r.status, r.detail) for r in blocks_alone(equivalence) if r.status != "equal"] == []


@settings(max_examples=budget(), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_standard_calls_agree(equivalence, data):
    inputs = data.draw(standard_call_inputs(equivalence.arguments), label="inputs")
    equivalence.assert_equivalent(inputs, mode="plain", atol=1e-5)
'''


FAMILY_TEMPLATE = '''"""Equivalence tests for the generated family package `{package}` (converted from {pipelines}).

Each workflow runs through the family's pipeline and is compared with its own standard pipeline. Written by
`modularize emit-tests`; regenerate it rather than edit it. Run it with `pytest {file}`; add `-n auto` to spread it
over cores (pytest-xdist) and `--hypothesis-profile=modularize-ci` for a longer randomized run.
"""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modularize.testing.equivalence import Equivalence
from modularize.testing.standalone_blocks import blocks_alone
from modularize.testing.strategies import budget, standard_call_inputs

PACKAGE = Path(__file__).parent / {package_path!r}
# `None`: modularize's built-in tiny components; else "module:function" returning the constructor arguments
COMPONENTS = {components!r}
# each workflow's cases: (case name, the call's arguments over the defaults; None: the built-in case of that name,
# which holds tensors)
WORKFLOWS = {workflows}
CASES = [(workflow, name, case) for workflow, matrix in WORKFLOWS.items() for name, case in matrix]
_EQUIVALENCES = {{}}


def equivalence_of(workflow):
    if workflow not in _EQUIVALENCES:
        _EQUIVALENCES[workflow] = Equivalence(PACKAGE, COMPONENTS, workflow=workflow)
    return _EQUIVALENCES[workflow]


def inputs_of(workflow, name, inputs):
    return equivalence_of(workflow).built_in_case(name) if inputs is None else inputs


@pytest.mark.parametrize("workflow, name, inputs", CASES, ids=[f"{{w}}-{{n}}" for w, n, _ in CASES])
def test_exact_mode_is_bitwise_equal(workflow, name, inputs):
    equivalence_of(workflow).assert_equivalent(inputs_of(workflow, name, inputs), mode="exact")


@pytest.mark.parametrize("workflow, name, inputs", CASES, ids=[f"{{w}}-{{n}}" for w, n, _ in CASES])
def test_plain_mode_is_within_tolerance(workflow, name, inputs):
    equivalence_of(workflow).assert_equivalent(inputs_of(workflow, name, inputs), mode="plain", atol=1e-5)


@pytest.mark.parametrize("workflow", list(WORKFLOWS))
def test_every_block_runs_alone_on_what_it_declares(workflow):
    """Each block on a fresh pipeline, with the inputs it declares taken from a full run: the full run's outputs."""
    results = blocks_alone(equivalence_of(workflow))
    assert [(r.key, r.status, r.detail) for r in results if r.status != "equal"] == []


@pytest.mark.parametrize("workflow", list(WORKFLOWS))
@settings(max_examples=budget(), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_standard_calls_agree(workflow, data):
    equivalence = equivalence_of(workflow)
    inputs = data.draw(standard_call_inputs(equivalence.arguments), label="inputs")
    equivalence.assert_equivalent(inputs, mode="plain", atol=1e-5)
'''


def pipeline_of(package: Path) -> str:
    """The standard pipeline class a generated package was converted from (read from its headers)."""
    init = package / "__init__.py"
    text = init.read_text(encoding="utf-8") if init.is_file() else ""
    parsed = read_header(text)
    if parsed is None:
        raise InputError("not a package generated by modularize", Location(str(package)))
    return parsed[0].pipeline_class


def family_of(package: Path) -> dict[str, str]:
    """{workflow: the standard pipeline class} of a family's package, in selection order; {} for another package."""
    init = package / "__init__.py"
    parsed = read_header(init.read_text(encoding="utf-8")) if init.is_file() else None
    if parsed is None or not parsed[0].family:
        return {}
    from ..testing.equivalence import load_package, package_classes

    pipeline_cls = package_classes(load_package(package))[0]
    return {name: cls.standard_pipeline.rpartition(".")[2] for name, cls in pipeline_cls.workflow_pipelines.items()}


def _matrix(pipeline: str, components: str | None, package: Path, workflow: str | None = None) -> list:
    """The cases of the pipeline's built-in matrix: its hand-written tiny setup's, or else those of the components
    `verify` builds per component class (as the emitted tests will build them); one default case for components
    the user gives."""
    from ..testing.tiny import setup_for

    setup = setup_for(pipeline)
    if setup is None and components is None:
        setup = _setup_by_class(package, workflow)
    if setup is None and components is None:
        raise InputError(
            f"no tiny components are built in for {pipeline}",
            Location(str(package)),
            fix="pass --components MODULE:FUNCTION returning the standard pipeline's constructor arguments",
        )
    return [(name, _literal(case)) for name, case in setup.cases] if setup is not None else [("default", {})]


def _literal(case: dict) -> dict | None:
    """The case as written in the test file, or None where its values are no Python literals (a tensor): the test
    takes the built-in case of that name (`Equivalence.built_in_case`)."""
    try:
        return case if ast.literal_eval(repr(case)) == case else None
    except (ValueError, SyntaxError, TypeError):
        return None


def _setup_by_class(package: Path, workflow: str | None):
    """The setup `verify` picks for the package's standard pipeline (`builtin_setup`), None when it has none."""
    from ..testing.equivalence import builtin_setup, load_package, package_classes, standard_class

    pipeline_cls = package_classes(load_package(package))[0]
    if workflow is not None:
        pipeline_cls = pipeline_cls.workflow_pipelines[workflow]
    return builtin_setup(standard_class(pipeline_cls, package), pipeline_cls)


def test_file(package: Path, directory: Path, components: str | None = None) -> tuple[Path, str]:
    """The path and text of the pytest file for `package`, to live in `directory` (a family's package: each
    workflow's cases, run through the family's pipeline)."""
    path = directory / f"test_{package.resolve().name}.py"
    family = family_of(package)
    if family:
        workflows = {name: _matrix(pipeline, components, package, name) for name, pipeline in family.items()}
        text = FAMILY_TEMPLATE.format(
            package=package.resolve().name,
            pipelines=", ".join(f"`{pipeline}`" for pipeline in family.values()),
            file=path.name,
            package_path=os.path.relpath(package.resolve(), directory.resolve()),
            components=components,
            workflows=repr(workflows),
        )
        return path, format_python(text)
    pipeline = pipeline_of(package)
    matrix = _matrix(pipeline, components, package)
    text = TEMPLATE.format(
        package=package.resolve().name,
        pipeline=pipeline,
        file=path.name,
        package_path=os.path.relpath(package.resolve(), directory.resolve()),
        components=components,
        matrix=repr(matrix),
    )
    return path, format_python(text)


def write_test_file(package: Path, directory: Path, components: str | None = None) -> Path:
    path, text = test_file(package, directory, components)
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def command_emit_tests(args) -> int:
    from .emit_tests import write_test_file

    path = write_test_file(Path(args.package), Path(args.output), args.components)
    print(f"wrote {path}")
    return EXIT_OK
