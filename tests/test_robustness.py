"""Crash-proof conversion: every input ends in a package that compiles, a located refusal, or a one-line user error.

Each case checks the exit code (2: bad input, 3: a construct the converter refuses), the one-line message with its
`file:line:col`, and that nothing was written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from modularize.convert import convert
from modularize.emit.validate import GeneratedCodeError, check_generated, file_problem
from modularize.errors import EXIT_INTERNAL, EXIT_REFUSED, EXIT_USAGE, ModularizeError
from modularize.frontend.nesting import MAX_DEPTH
from modularize.frontend.source_file import MAX_SOURCE_BYTES
from modularize.options import ConvertOptions

from .conftest import TOY
from .test_cli import assert_one_line_error

TOY_TEXT = TOY.read_text(encoding="utf-8")
LATENTS_LINE = "        latents = latents * self.scheduler.init_noise_sigma\n"


def toy_variant(tmp_path: Path, old: str, new: str, name: str = "pipeline_toy.py") -> Path:
    assert old in TOY_TEXT, old
    path = tmp_path / name
    path.write_text(TOY_TEXT.replace(old, new, 1), encoding="utf-8")
    return path


def line_of(path: Path, fragment: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if fragment in line)


def refused(cli, path: Path, tmp_path: Path, code: int, *fragments: str) -> None:
    out = tmp_path / "out"
    run = cli(path, "-o", out)
    assert run.code == code, run
    assert_one_line_error(run, *fragments)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name != path.name] == []


# -- 1. nesting depth ---------------------------------------------------------------------------------------------
DEEP = {
    "sum of 500 terms": "latents = " + " + ".join(["latents"] * 500),
    "list nested 199 deep": "depth = " + "[" * 199 + "latents" + "]" * 199,
    "call nested 199 deep": "depth = " + "float(" * 199 + "1" + ")" * 199,
    "attribute chain of 3000": "depth = latents" + ".real" * 3000,
    "and-chain of 5000": "depth = " + " and ".join(["latents"] * 5000),
}


@pytest.mark.parametrize("kind", sorted(DEEP))
def test_deep_expressions_are_refused_with_their_location(cli, tmp_path, kind):
    path = toy_variant(tmp_path, LATENTS_LINE, LATENTS_LINE + "        " + DEEP[kind] + "\n")
    line = line_of(path, DEEP[kind][:20]) if not kind.startswith("sum") else line_of(path, "latents + latents")
    refused(cli, path, tmp_path, EXIT_REFUSED, f"{path}:{line}:9: expression nested deeper than {MAX_DEPTH} levels")


def deepened(depth: int, function, *args):
    """`function(*args)` called `depth` frames further down the stack (as under pytest plugins, a survey worker)."""
    if depth == 0:
        return function(*args)
    return deepened(depth - 1, function, *args)


JUST_UNDER = {
    "sum": lambda n: " + ".join(["latents"] * n),
    "list": lambda n: "[" * n + "latents" + "]" * n + "[0]" * n,
    "call": lambda n: "torch.abs(" * n + "latents" + ")" * n,
    "subscript": lambda n: "(latents" + "[...]" * n + ")",
    "ternary": lambda n: " if latents is None else ".join(["latents"] * n),
}


@pytest.mark.parametrize("kind", sorted(JUST_UNDER))
def test_expressions_just_under_the_limit_convert_on_a_deepened_stack(kind):
    """The bound leaves room: the deepest accepted expression of each kind converts 400 frames down the stack."""
    from modularize.frontend.parse import parse_source

    make = JUST_UNDER[kind]

    def text(n: int) -> str:
        return TOY_TEXT.replace(LATENTS_LINE, LATENTS_LINE + f"        latents = {make(n)}\n", 1)

    low, high = 1, 400
    while low < high:  # the largest n still accepted
        middle = (low + high + 1) // 2
        try:
            parse_source(text(middle), "pipeline_toy.py")
            low = middle
        except ModularizeError:
            high = middle - 1
    assert low > 10
    files = deepened(400, convert, text(low), ConvertOptions(path="pipeline_toy.py"))
    check_generated(files)


def test_survey_reports_a_deep_file_as_one_row_and_writes_its_report(cli, tmp_path, monkeypatch):
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "pipeline_toy.py").write_text(TOY_TEXT)
    toy_variant(
        pipelines, LATENTS_LINE, LATENTS_LINE + "        " + DEEP["sum of 500 terms"] + "\n", "pipeline_deep.py"
    )
    monkeypatch.chdir(tmp_path)
    run = cli("survey", pipelines, "-j", "1", "--json", tmp_path / "report.json")
    assert run.code == 0, run
    report = json.loads((tmp_path / "report.json").read_text())
    rows = {row["file"]: row for row in report["pipelines"]}
    assert rows["pipeline_deep.py"]["status"] == "refused"
    assert "expression nested deeper than" in rows["pipeline_deep.py"]["reason"]
    assert rows["pipeline_toy.py"]["status"] == "converted"


# -- 2. what `__call__` returns -------------------------------------------------------------------------------------
FINAL_RETURN = "        return ImagePipelineOutput(images=image)\n"


def test_returning_a_name_nothing_assigns_is_refused_at_the_name(cli, tmp_path):
    path = toy_variant(tmp_path, FINAL_RETURN, "        return ImagePipelineOutput(images=picture)\n")
    line = line_of(path, "images=picture")
    refused(
        cli,
        path,
        tmp_path,
        EXIT_REFUSED,
        f"{path}:{line}:43: `picture` is read, but neither `__call__` nor the module",
    )


def test_a_helper_reading_a_name_nothing_defines_is_refused_at_the_name(cli, tmp_path):
    # `embed_text` renamed its parameter but still reads the old name: the standard pipeline raises `NameError`
    path = toy_variant(tmp_path, "    def embed_text(self, texts, device):", "    def embed_text(self, texts, where):")
    line = line_of(path, "input_ids.to(device)")
    refused(cli, path, tmp_path, EXIT_REFUSED, f"{path}:{line}:", "`device` is read in `embed_text`, but neither")


def test_returning_a_module_name_is_refused_at_the_name(cli, tmp_path):
    path = toy_variant(tmp_path, FINAL_RETURN, "        return ImagePipelineOutput(images=randn_tensor)\n")
    line = line_of(path, "images=randn_tensor")
    refused(
        cli,
        path,
        tmp_path,
        EXIT_REFUSED,
        f"{path}:{line}:43: `__call__` returns `randn_tensor`, which it never assigns",
    )


def test_returning_an_argument_unchanged_is_refused(cli, tmp_path):
    path = toy_variant(
        tmp_path,
        "        if not return_dict:\n            return (image,)\n" + FINAL_RETURN,
        "        return ImagePipelineOutput(images=generator)\n",
    )
    line = line_of(path, "images=generator")
    refused(cli, path, tmp_path, EXIT_REFUSED, f"{path}:{line}:43: `__call__` returns its argument `generator`")


def test_a_constant_output_field_is_dropped_with_a_note(tmp_path):
    path = toy_variant(
        tmp_path,
        "        if not return_dict:\n            return (image,)\n" + FINAL_RETURN,
        "        return ImagePipelineOutput(images=image, nsfw_content_detected=None)\n",
    )
    from modularize.convert import plan_for

    plan = plan_for(path.read_text(), ConvertOptions(path=str(path)))
    assert [name for name, _ in plan.outputs] == ["images"]
    assert any("nsfw_content_detected=None" in note.what for note in plan.notes)
    check_generated(convert(path.read_text(), ConvertOptions(path=str(path))))


# -- 4. inputs ----------------------------------------------------------------------------------------------------
def test_a_directory_is_not_an_input(cli, tmp_path):
    directory = tmp_path / "pipeline_dir.py"
    directory.mkdir()
    refused(cli, directory, tmp_path, EXIT_USAGE, f"{directory}: is a directory, not a pipeline module")


def test_a_device_is_not_an_input(cli, tmp_path):
    run = cli("/dev/zero", "-o", tmp_path / "out")
    assert run.code == EXIT_USAGE
    assert_one_line_error(run, "/dev/zero: not a regular file (a character device)")
    assert not (tmp_path / "out").exists()


def test_a_fifo_is_refused_without_blocking(cli, tmp_path):
    fifo = tmp_path / "pipeline_fifo.py"
    os.mkfifo(fifo)
    refused(cli, fifo, tmp_path, EXIT_USAGE, f"{fifo}: not a regular file (a FIFO)")


def test_a_file_over_the_size_cap_is_refused_before_reading(cli, tmp_path):
    big = tmp_path / "pipeline_big.py"
    with open(big, "wb") as handle:  # sparse: the size is there, the bytes never get read
        handle.truncate(MAX_SOURCE_BYTES + 1)
    refused(cli, big, tmp_path, EXIT_USAGE, f"{big}: too large for a pipeline module", "the limit is 1,048,576")


def test_a_file_at_the_size_cap_is_read(tmp_path):
    from modularize.frontend.source_file import read_source_text

    text = TOY_TEXT + "#" * (MAX_SOURCE_BYTES - len(TOY_TEXT.encode()) - 1) + "\n"
    path = tmp_path / "pipeline_toy.py"
    path.write_text(text)
    assert read_source_text(str(path)) == text


# -- 5. constructs refused with a location ----------------------------------------------------------------------------
def test_async_call_is_refused_at_async(cli, tmp_path):
    path = toy_variant(tmp_path, "    def __call__(", "    async def __call__(")
    line = line_of(path, "async def __call__")
    refused(cli, path, tmp_path, EXIT_REFUSED, f"{path}:{line}:5: `async def __call__`")


def test_a_relative_import_outside_a_package_is_refused_at_the_import(cli, tmp_path):
    path = toy_variant(tmp_path, "import torch\n", "import torch\nfrom .helpers import thing\n")
    line = line_of(path, "from .helpers import thing")
    refused(
        cli, path, tmp_path, EXIT_REFUSED, f"{path}:{line}:1: relative import in a file that is not inside a package"
    )


# -- 6. generated code is checked before it is written --------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("def f():\n    continue\n", "denoise.py:2: SyntaxError: 'continue' not properly in loop"),
        ("class A:\n    def f(self):\n        return g()\n", "denoise.py:2: `g` is read in `f` but never defined"),
        ("x = y\ny = 1\n", "denoise.py:1: `y` is read before the statement that defines it"),
        ("import torch\nclass A:\n    b = 1\n    c = b + torch.ones(1)\n", None),
        ("def f():\n    return [i for i in range(3)]\nZ = [j for j in f()]\n", None),
        # what runs on import, in order: class bodies and decorators do, function bodies do not
        (
            "class B(A):\n    pass\n\n\nclass A:\n    pass\n",
            "denoise.py:1: `A` is read before the statement that defines it",
        ),
        (
            "class A:\n    x = helper()\n\n\ndef helper():\n    return 1\n",
            "denoise.py:2: `helper` is read before the statement that defines it",
        ),
        (
            "@deco\ndef f():\n    pass\n\n\ndef deco(x):\n    return x\n",
            "denoise.py:1: `deco` is read before the statement that defines it",
        ),
        ("def f():\n    return g()\n\n\ndef g():\n    return 1\n", None),
        (
            "class A:\n    class B:\n        y = C\n\n\nC = 1\n",
            "denoise.py:3: `C` is read before the statement that defines it",
        ),
    ],
)
def test_generated_file_problems(text, problem):
    assert file_problem("denoise.py", text) == problem


def test_invalid_generated_code_is_a_converter_bug_and_nothing_is_written(cli, tmp_path, monkeypatch):
    import modularize.convert as core

    real = core.emit_package

    def broken(*args, **kwargs):
        files = real(*args, **kwargs)
        files["denoise.py"] += "\ncontinue\n"
        return files

    monkeypatch.setattr(core, "emit_package", broken)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "logs"))
    (tmp_path / "logs").mkdir()
    out = tmp_path / "out"
    run = cli(TOY, "-o", out)
    assert run.code == EXIT_INTERNAL
    assert "internal error: GeneratedCodeError: generated denoise.py:" in run.err
    assert "'continue' not properly in loop" in run.err
    assert not out.exists()
    (log,) = (tmp_path / "logs").iterdir()
    assert "GeneratedCodeError" in log.read_text()
    with pytest.raises(GeneratedCodeError):
        check_generated({"denoise.py": "continue\n"})


# -- 3 and 6. mutations that used to crash or give code that does not compile -------------------------------------
def sd_variant(tmp_path: Path, sd_source: Path, old: str, new: str) -> Path:
    """The installed Stable Diffusion module with one change, in a package tree so its relative imports resolve."""
    text = sd_source.read_text(encoding="utf-8")
    assert old in text, old
    package = tmp_path / "diffusers" / "pipelines" / "stable_diffusion"
    package.mkdir(parents=True)
    for directory in (package, package.parent, package.parent.parent):
        (directory / "__init__.py").write_text("")
    path = package / "pipeline_stable_diffusion.py"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def converts_to_valid_code(path: Path) -> dict[str, str]:
    from modularize.frontend.source_file import read_source

    source = read_source(str(path))
    options = ConvertOptions(path=str(path), label=source.label, module_name=source.module_name)
    files = convert(source.text, options)
    check_generated(files)
    return files


def test_a_continue_in_the_denoising_loop_is_refused_at_it(cli, tmp_path):
    loop_line = "            latents = self.scheduler.step(noise_pred, t, latents).prev_sample\n"
    path = toy_variant(tmp_path, loop_line, "            if i == 0:\n                continue\n" + loop_line)
    line = line_of(path, "                continue")
    refused(cli, path, tmp_path, EXIT_REFUSED, f"{path}:{line}:17: `continue` in the denoising loop")


def test_a_continue_in_a_loop_inside_the_step_converts(tmp_path):
    loop_line = "            latents = self.scheduler.step(noise_pred, t, latents).prev_sample\n"
    inner = "            for _ in range(1):\n                continue\n"
    path = toy_variant(tmp_path, loop_line, inner + loop_line)
    converts_to_valid_code(path)


def test_an_early_return_before_the_outputs_is_refused_at_it(cli, tmp_path):
    path = toy_variant(
        tmp_path, "        # 3. Prepare timesteps\n", "        if not prompts:\n            return None\n"
    )
    line = line_of(path, "            return None")
    refused(cli, path, tmp_path, EXIT_REFUSED, f"{path}:{line}:13: a `return` before the pipeline's outputs")


def test_a_callback_assignment_left_without_its_guard_is_dropped(tmp_path, sd_source):
    guard = "        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):\n"
    assignment = "            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs\n"
    path = sd_variant(tmp_path, sd_source, guard + assignment, assignment[4:])
    files = converts_to_valid_code(path)
    assert "callback_on_step_end_tensor_inputs =" not in "".join(files.values())


def test_a_static_helper_taking_self_is_refused_at_the_parameter(cli, tmp_path):
    path = toy_variant(
        tmp_path,
        "    def embed_text(self, texts, device):",
        "    @staticmethod\n    def embed_text(self, texts, device):",
    )
    line = line_of(path, "def embed_text(self")
    refused(
        cli,
        path,
        tmp_path,
        EXIT_REFUSED,
        f"{path}:{line}:20: `@staticmethod` helper `embed_text` has a parameter named `self`",
    )


@pytest.mark.parametrize("decorator", ["@staticmethod", "@classmethod", "@property"])
def test_a_decorator_that_unmakes_call_is_refused(cli, tmp_path, decorator):
    path = toy_variant(tmp_path, "    @torch.no_grad()\n    def __call__(", f"    {decorator}\n    def __call__(")
    line = line_of(path, "def __call__") - 1
    refused(cli, path, tmp_path, EXIT_REFUSED, f"{path}:{line}:5: a decorator that makes `__call__` no plain method")


# -- 7. the mutation fuzz ---------------------------------------------------------------------------------------------
def fuzz_corpus() -> list[Path]:
    """The toy and a few installed pipelines that convert (unconditional, SD): small enough for the test tiers."""
    from modularize.frontend.source_file import installed_diffusers_file

    installed = [
        "pipelines/ddpm/pipeline_ddpm.py",
        "pipelines/ddim/pipeline_ddim.py",
        "pipelines/stable_diffusion/pipeline_stable_diffusion.py",
    ]
    return [TOY, *(installed_diffusers_file(name) for name in installed)]


def assert_no_failures(outcomes) -> None:
    from modularize.testing import fuzz

    failures = [o for o in outcomes if o.status in (fuzz.CRASHED, fuzz.INVALID, fuzz.NONDETERMINISTIC)]
    assert not failures, "\n".join(f"{o.index}: {o.description}: {o.detail}\n{o.traceback}" for o in failures)


def test_fuzz_variants_are_seeded_and_deterministic():
    from modularize.testing import fuzz

    files = fuzz_corpus()
    first = [fuzz.make_variant(files, 7, index) for index in range(12)]
    again = [fuzz.make_variant(files, 7, index) for index in range(12)]
    assert first == again
    assert len({v.kind for v in first}) > 3
    assert all(v.text != Path(v.path).read_text() for v in first)


def test_fuzz_a_handful_of_variants():
    from modularize.testing import fuzz

    files = [TOY]
    outcomes = [fuzz.run_variant(files, 0, index, twice=index % 3 == 0) for index in range(8)]
    assert_no_failures(outcomes)
    assert {o.status for o in outcomes} & {fuzz.CONVERTED, fuzz.REFUSED}


@pytest.mark.slow
def test_fuzz_a_few_hundred_variants_in_parallel():
    """benchmarks/fuzz.py's run over a small corpus, across 2 processes: no crash, no invalid output."""
    import concurrent.futures

    from modularize.testing import fuzz

    files = fuzz_corpus()
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        tasks = [(files, 11, index, index % 20 == 0) for index in range(240)]
        outcomes = list(pool.map(_fuzz_task, tasks, chunksize=8))
    assert_no_failures(outcomes)
    counts = fuzz.summarize(outcomes, 0)
    assert counts["converted"] > 20 and counts["refused"] > 20, counts


def _fuzz_task(task):
    from modularize.testing import fuzz

    files, seed, index, twice = task
    return fuzz.run_variant(files, seed, index, twice)


@pytest.mark.slow
def test_no_single_statement_deletion_from_stable_diffusion_crashes(sd_source):
    import concurrent.futures

    from modularize.testing import fuzz

    variants = fuzz.deletions(sd_source)
    assert len(variants) > 50
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(fuzz.convert_variant, variants, chunksize=4))
    assert_no_failures(outcomes)


@pytest.mark.parametrize(
    ("before", "statement_line"),
    [
        ("        if latents is None:\n            pass\n        elif latents is not None:\n", "if latents is None"),
        ("        if latents is None:\n            pass\n        else:\n", "if latents is None"),
        ("        try:\n            pass\n        except ValueError:\n", "try:"),
        ("        with torch.no_grad():\n", "            depth = "),
    ],
)
def test_a_deep_expression_in_a_nested_block_is_located_at_its_statement(cli, tmp_path, before, statement_line):
    deep = "depth = " + "[" * 70 + "latents" + "]" * 70
    path = toy_variant(tmp_path, LATENTS_LINE, LATENTS_LINE + before + "            " + deep + "\n")
    line = line_of(path, statement_line)
    column = 13 if statement_line.startswith(" ") else 9
    refused(cli, path, tmp_path, EXIT_REFUSED, f"{path}:{line}:{column}: expression nested deeper than")


def test_an_early_tuple_return_matches_the_constant_fields_of_the_final_one(tmp_path):
    path = toy_variant(
        tmp_path,
        "            return (image,)\n" + FINAL_RETURN,
        "            return (image, None)\n        return ImagePipelineOutput(images=image, nsfw_content_detected=None)\n",
    )
    converts_to_valid_code(path)


_REAL_SURVEY_FILE = None


def _dying_survey_file(path: str, root: str, lint_root: str | None = None):
    """A worker that dies (as on a segfault) on one file and surveys the others."""
    if path.endswith("pipeline_dies.py"):
        os._exit(9)
    return _REAL_SURVEY_FILE(path, root, lint_root)


def test_a_dead_survey_worker_is_one_crashed_row(tmp_path, monkeypatch):
    global _REAL_SURVEY_FILE
    from modularize.commands import survey

    _REAL_SURVEY_FILE = survey.survey_file
    monkeypatch.setattr(survey, "survey_file", _dying_survey_file)
    for name in ("pipeline_a.py", "pipeline_dies.py", "pipeline_z.py"):
        (tmp_path / name).write_text(TOY_TEXT)
    entries, files = survey.run_survey(tmp_path, jobs=2)
    statuses = {entry.file: entry.status for entry in entries}
    assert files == 3
    assert statuses == {"pipeline_a.py": "converted", "pipeline_dies.py": "crashed", "pipeline_z.py": "converted"}


def test_a_name_no_one_defines_is_refused_where_it_is_read(cli, tmp_path):
    path = toy_variant(tmp_path, "        timesteps = self.scheduler.timesteps\n", "")
    line = line_of(path, "for i, t in enumerate(self.progress_bar(timesteps))")
    column = path.read_text().splitlines()[line - 1].index("timesteps))") + 1
    refused(
        cli,
        path,
        tmp_path,
        EXIT_REFUSED,
        f"{path}:{line}:{column}: ",
        "`timesteps` is read, but neither `__call__` nor the module defines it",
    )


@pytest.mark.parametrize(
    ("call", "argument", "message"),
    [
        ("self.embed_text(prompts, device, tokens=77)", "tokens=77", "`embed_text` has no parameter `tokens`"),
        ("self.embed_text(prompts, device, 77)", "77", "`embed_text` takes 2 positional arguments, more are given"),
    ],
    ids=["unknown-keyword", "too-many-positional"],
)
def test_a_helper_call_the_helper_cannot_take_is_refused_at_the_argument(cli, tmp_path, call, argument, message):
    """The source raises `TypeError` there (EasyAnimate Control's `encode_prompt(..., text_encoder_index=0)`)."""
    path = toy_variant(tmp_path, "self.embed_text(prompts, device)", call)
    line = line_of(path, call)
    column = path.read_text().splitlines()[line - 1].index(call) + call.index(argument) + 1
    refused(cli, path, tmp_path, EXIT_REFUSED, f"{path}:{line}:{column}: ", message)


def test_a_decorator_reading_a_name_the_module_never_imports_is_refused_at_it(cli, tmp_path, sd_source):
    """`@functools.cache` without `import functools`: the source fails when imported; refused at the name."""
    source = sd_source.read_text()
    text = source.replace("    def _encode_prompt(", "    @functools.cache\n    def _encode_prompt(", 1)
    assert text != source and "import functools" not in text
    path = tmp_path / "pipeline_sd.py"
    path.write_text(text)
    run = cli(str(path), "-o", str(tmp_path / "out"))
    line = text[: text.index("@functools.cache")].count("\n") + 1
    assert run.code == 3 and f"pipeline_sd.py:{line}:6: `functools` is read, but the module does not define" in run.err
    assert not (tmp_path / "out").exists()


def test_what_follows_a_continue_still_declares_what_it_reads():
    """Statements after a `continue` never run, but the block carries them: their reads are its inputs."""
    import libcst as cst

    from modularize.cst.dataflow import flow_of

    loop = cst.parse_statement("for _ in range(n):\n    continue\n    out = model(sample, sigma)\n")
    flow = flow_of([loop])
    assert {"n", "model", "sample", "sigma"} <= set(flow.reads) and "out" not in flow.writes


def test_a_function_defined_in_call_keeps_its_own_return():
    """Only `__call__`'s own `return`s are runtime plumbing; a helper defined inside it keeps its body."""
    import libcst as cst

    from modularize.analysis.runtime_plumbing import find_runtime_plumbing

    body = cst.parse_module("def pad(mask):\n    return mask + 1\n\nmask = pad(mask)\nreturn Output(mask=mask)\n").body
    drops, returns = find_runtime_plumbing(body)
    assert [cst.Module(body=[]).code_for_node(r) for r in returns] == ["return Output(mask=mask)"]
    assert all("mask + 1" not in cst.Module(body=[]).code_for_node(d.node) for d in drops)
