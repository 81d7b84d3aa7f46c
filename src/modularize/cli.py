"""Command line: `modularize [convert] PIPELINE_FILE`, `modularize plan`, `modularize verify`, `modularize demo`.

All I/O happens here, at the edge; conversion itself is the pure `convert` function. User errors print one line
(`modularize: error: file:line:col: what (fix: ...)`) and exit non-zero; they never show a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import traceback
from pathlib import Path

from . import __version__
from .commands.console import stderr
from .errors import (
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    ModularizeError,
)

COMMANDS = ("convert", "plan", "verify", "check", "survey", "emit-tests", "demo")

EPILOG = f"""\
exit codes:
  {EXIT_OK}  success (verify: every case equal; convert --check: up to date)
  {EXIT_FAILED}  verify found a difference, or convert --check/--diff found the package out of date
  {EXIT_USAGE}  bad command line or bad input (missing file, syntax error, no pipeline class, hand-edited output)
  {EXIT_REFUSED}  the pipeline uses a construct modularize cannot convert yet (the message names file:line)
  {EXIT_INTERNAL} a bug in modularize (the traceback is saved to a file; please report it)

examples:
  modularize diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion.py -o modular_stable_diffusion
  modularize plan pipeline_foo.py --json
  modularize pipeline_foo.py pipeline_foo_img2img.py pipeline_foo_inpaint.py -o modular_foo   # one family package
  modularize verify modular_stable_diffusion --exact --case '{{"guidance_scale": 1.0, "num_images_per_prompt": 2}}'
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


# -- parser ------------------------------------------------------------------------------------------------------
def _add_verify_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--exact",
        action="store_true",
        help="also run each case in exact mode: the standard pipeline's CFG batches as half-batch calls and one "
        "model call per guider batch in the generated one; exact mode must be bitwise equal",
    )
    parser.add_argument(
        "--case",
        action="append",
        metavar="JSON",
        help="add a case: standard-call keyword arguments merged over the default inputs, e.g. "
        '\'{"guidance_scale": 1.0}\'; optional keys: "name", and "scheduler" (a diffusers scheduler class '
        "built from the default scheduler's config). Repeatable.",
    )
    parser.add_argument("--no-default-cases", action="store_true", help="run only the --case cases")
    parser.add_argument(
        "--components",
        metavar="MODULE:FUNCTION",
        help="your own components: a function returning the standard pipeline's constructor arguments "
        "(default: the built-in tiny offline components)",
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed for every run (default 0)")
    parser.add_argument("--atol", type=float, default=1e-5, help="plain-mode tolerance on max abs diff (default 1e-5)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--png", metavar="PATH", help="where to save standard | modular | difference")
    parser.add_argument("--no-png", action="store_true", help="do not save the comparison image")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modularize",
        description="Convert a standard diffusers pipeline into a modular pipeline package and prove that both "
        "produce identical outputs. `modularize PIPELINE_FILE` is short for `modularize convert PIPELINE_FILE`.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"modularize {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    convert = commands.add_parser(
        "convert",
        help="convert a pipeline module into a modular package",
        description="Parse PIPELINE_FILE (never importing it), split its pipeline's __call__ into blocks and write "
        "a modular pipeline package. Nothing is written unless the whole package was generated. Given several files "
        "(the text-to-image, image-to-image and inpainting pipelines of one model), write one package holding each "
        "as a workflow, selected by the inputs a call gives; `modularize plan` with the same files says how.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    convert.add_argument(
        "pipelines",
        metavar="PIPELINE_FILE",
        nargs="+",
        help="a standard pipeline module (e.g. pipeline_*.py); several: the workflows of one family's package, "
        "each FILE or FILE::CLASS",
    )
    convert.add_argument("-o", "--output", metavar="OUT_DIR", help="package directory (default: ./modular_<model>)")
    convert.add_argument(
        "--class", dest="class_name", metavar="NAME", help="pipeline class, if the module has several"
    )
    convert.add_argument(
        "--in-tree",
        action="store_true",
        help="emit diffusers' relative imports (for diffusers/modular_pipelines/<model>/)",
    )
    convert.add_argument(
        "--force", action="store_true", help="replace OUT_DIR even if it holds hand-edited or foreign files"
    )
    convert.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if OUT_DIR differs from what would be generated"
    )
    convert.add_argument(
        "--diff", action="store_true", help="write nothing; print a unified diff against OUT_DIR (exit 1 if any)"
    )
    convert.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    convert.add_argument(
        "--emit-tests", metavar="DIR", help="also write a pytest file proving the package equal (see emit-tests)"
    )
    convert.add_argument(
        "--components",
        metavar="MODULE:FUNCTION",
        help="components for the emitted tests (default: built-in tiny ones)",
    )
    convert.set_defaults(handler="convert")

    plan = commands.add_parser(
        "plan",
        help="print the conversion plan (blocks, inputs/outputs, components, guidance, what is dropped)",
        description="Print every decision the converter makes for PIPELINE_FILE, without writing anything. "
        "Given several files (the text-to-image, image-to-image, inpainting pipelines of one model), also how they "
        "make one family: which call argument selects each workflow, and which blocks and helpers have the same code.",
    )
    plan.add_argument("pipelines", metavar="PIPELINE_FILE", nargs="+")
    plan.add_argument("--class", dest="class_name", metavar="NAME", help="pipeline class, if the module has several")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(handler="plan")

    verify = commands.add_parser(
        "verify",
        help="prove a generated package gives the same outputs as its standard pipeline",
        description="Run the standard pipeline and the generated one on identical copies of the same components, "
        "per case with a fresh seeded generator and one CPU thread, and compare their outputs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("package", metavar="OUT_DIR", help="a package written by `modularize convert`")
    _add_verify_options(verify)
    verify.add_argument(
        "--workflow", metavar="NAME", help="a family's package: verify this workflow only (default: every workflow)"
    )
    verify.set_defaults(handler="verify")

    check = commands.add_parser(
        "check",
        help="check that generated packages are up to date with their sources and not edited by hand",
        description="Find generated packages (under the current directory, or those PATHS concern: their files, "
        "their sources, or directories holding them) and tell apart: up to date; stale (the source or the "
        "generator changed: prints the diff regeneration would make and the command that fixes it); edited by "
        "hand (a file no longer matches its recorded hash). Reads headers and hashes only, unless a package is "
        "stale; never imports torch or diffusers.",
        epilog="exit codes: 0 all up to date, 1 stale, edited or missing sources found (or --fix rewrote "
        "something), 2 usage errors",
    )
    check.add_argument(
        "paths", nargs="*", metavar="PATH", help="changed files or directories (as pre-commit passes them)"
    )
    check.add_argument(
        "--fix", action="store_true", help="regenerate stale packages (not hand-edited ones, unless --force)"
    )
    check.add_argument("--force", action="store_true", help="with --fix: regenerate over hand edits too")
    check.add_argument("-v", "--verbose", action="store_true", help="also list packages that are up to date")
    check.add_argument("-q", "--quiet", action="store_true", help="print nothing when everything is up to date")
    check.set_defaults(handler="check")

    survey = commands.add_parser(
        "survey",
        help="convert every pipeline class under a directory and report converted / refused / crashed",
        description="Convert every pipeline class in every Python file under DIRECTORY (statically: nothing is "
        "imported), in parallel, and report per class the outcome, the located refusal reason, the guidance "
        "pattern, the number of blocks and the time taken. Refusal reasons are grouped and counted.",
        epilog="exit codes: 0 nothing crashed (and, with --verify, every verified package equal), 1 otherwise, "
        "2 usage errors",
    )
    survey.add_argument("directory", metavar="DIRECTORY", help="e.g. the installed diffusers' pipelines/ directory")
    survey.add_argument(
        "-j", "--jobs", type=_positive_int, default=None, help="worker processes, at least 1 (default: one per CPU)"
    )
    survey.add_argument("--json", metavar="PATH", help="write the report as JSON (`-`: standard output)")
    survey.add_argument("--markdown", metavar="PATH", help="write the report as Markdown (`-`: standard output)")
    survey.add_argument("--log", metavar="PATH", default="modularize-survey.log", help="where crash tracebacks go")
    survey.add_argument(
        "--verify",
        action="store_true",
        help="also verify every converted pipeline (plain + exact mode) on tiny components: hand-written or built "
        "by component class",
    )
    survey.add_argument(
        "--lint",
        action="store_true",
        help="also run ruff with diffusers' rule selection over every converted package (a problem fails the survey)",
    )
    survey.set_defaults(handler="survey")

    emit = commands.add_parser(
        "emit-tests",
        help="write a pytest file that keeps proving a generated package equal to its standard pipeline",
        description="Write DIR/test_<package>.py: a fixed matrix asserted bitwise in exact mode and within 1e-5 in "
        "plain mode, plus hypothesis-drawn standard calls (both pipelines accept and agree, or both reject). Runs "
        "serially or with pytest -n auto; --hypothesis-profile=modularize-ci draws more examples.",
    )
    emit.add_argument("package", metavar="PACKAGE_DIR", help="a package written by `modularize convert`")
    emit.add_argument("-o", "--output", metavar="DIR", required=True, help="directory for the test file")
    emit.add_argument(
        "--components", metavar="MODULE:FUNCTION", help="components for the tests (default: built-in tiny ones)"
    )
    emit.set_defaults(handler="emit_tests")

    demo = commands.add_parser(
        "demo",
        help="convert the installed diffusers' StableDiffusionPipeline and verify it",
        description="Convert diffusers' StableDiffusionPipeline from the installed package and verify the result "
        "on tiny offline components over the built-in matrix, in plain and exact mode.",
    )
    demo.add_argument(
        "-o", "--output", metavar="OUT_DIR", help="package directory (default: ./modular_stable_diffusion)"
    )
    _add_verify_options(demo)
    demo.set_defaults(handler="demo", exact=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "convert")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        # each command's module is imported only when it runs: `check` must stay light (no torch, no LibCST)
        module = importlib.import_module(f".commands.{args.handler}", __package__)
        return getattr(module, f"command_{args.handler}")(args)
    except ModularizeError as error:
        stderr(f"modularize: error: {error}")
        return error.exit_code
    except KeyboardInterrupt:
        stderr("modularize: interrupted")
        return 130
    except Exception as error:  # a bug in modularize, not a user error: keep the traceback, out of the way
        log = Path(tempfile.gettempdir()) / f"modularize-crash-{os.getpid()}.log"
        log.write_text(traceback.format_exc(), encoding="utf-8")
        stderr(f"modularize: internal error: {type(error).__name__}: {error} (traceback in {log}; please report it)")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
