"""Command line: `modularize [convert] PIPELINE_FILE`, `modularize plan`, `modularize verify`, `modularize demo`.

All I/O happens here, at the edge; conversion itself is the pure `convert` function. User errors print one line
(`modularize: error: file:line:col: what (fix: ...)`) and exit non-zero; they never show a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import __version__
from .errors import (
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    InputError,
    Location,
    ModularizeError,
)

COMMANDS = ("convert", "plan", "verify", "check", "survey", "emit-tests", "demo")
DEMO_SOURCE = "pipelines/stable_diffusion/pipeline_stable_diffusion.py"

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
  modularize verify modular_stable_diffusion --exact --case '{{"guidance_scale": 1.0, "num_images_per_prompt": 2}}'
"""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- convert / plan ----------------------------------------------------------------------------------------------
def _options(args, source):
    from .options import ConvertOptions

    return ConvertOptions(
        path=str(args.pipeline),
        label=source.label,
        module_name=source.module_name,
        class_name=args.class_name,
        in_tree=getattr(args, "in_tree", False),
    )


def _convert_files(args):
    from .convert import convert
    from .source_file import read_source

    source = read_source(args.pipeline)
    return convert(source.text, _options(args, source))


def command_convert(args) -> int:
    from .output_dir import compare, unified_diff, write_package

    started = time.perf_counter()
    if getattr(args, "components", None) and not getattr(args, "emit_tests", None):
        raise InputError("--components only applies to the emitted tests", fix="add --emit-tests DIR, or drop it")
    files = _convert_files(args)
    output = Path(args.output) if args.output else Path(_package_name(files))
    fix = f"modularize convert {shlex.quote(str(args.pipeline))} -o {shlex.quote(str(output))}"
    if args.check or args.diff:
        comparison = compare(output, files)
        if args.diff:
            sys.stdout.write(unified_diff(output, files))
        if comparison.up_to_date:
            if not args.quiet:
                print(f"{output}: up to date")
            return EXIT_OK
        problems = [f"missing {n}" for n in comparison.missing] + [f"changed {n}" for n in comparison.changed]
        problems += [f"unexpected {n}" for n in comparison.extra]
        _stderr(f"{output}: out of date ({', '.join(problems)}); regenerate with: {fix}")
        return EXIT_FAILED
    write_package(output, files, force=args.force)
    if not args.quiet:
        elapsed = time.perf_counter() - started
        print(f"wrote {output}/ ({len(files)} files) from {args.pipeline} in {elapsed:.2f}s")
    if getattr(args, "emit_tests", None):
        from .emit_tests import write_test_file

        path = write_test_file(output, Path(args.emit_tests), args.components)
        if not args.quiet:
            print(f"wrote {path}")
    return EXIT_OK


def command_emit_tests(args) -> int:
    from .emit_tests import write_test_file

    path = write_test_file(Path(args.package), Path(args.output), args.components)
    print(f"wrote {path}")
    return EXIT_OK


def _package_name(files: dict[str, str]) -> str:
    blocks_file = next(name for name in files if name.startswith("modular_blocks_"))
    return "modular_" + blocks_file[len("modular_blocks_") : -len(".py")]


def command_plan(args) -> int:
    from .convert import plan_for
    from .plan import plan_json, render_plan
    from .source_file import read_source

    source = read_source(args.pipeline)
    plan = plan_for(source.text, _options(args, source))
    sys.stdout.write(plan_json(plan) + "\n" if args.json else render_plan(plan))
    return EXIT_OK


# -- check -------------------------------------------------------------------------------------------------------
def command_check(args) -> int:
    from .drift import EDITED, SOURCE_MISSING, STALE, check_package, find_packages, regenerate, select_packages

    for path in args.paths:
        if not Path(path).exists():
            raise InputError("no such file or directory", Location(path))
    packages = find_packages(Path.cwd())
    if args.paths:
        packages = select_packages(packages, args.paths)
    problems = fixed = 0
    for directory in packages:
        status = check_package(directory)
        name = _relative(directory)
        if status.state == STALE:
            if args.fix:
                from .output_dir import write_package

                write_package(directory, status.files)
                print(f"{name}: regenerated from {status.source_label}")
                fixed += 1
                continue
            problems += 1
            sys.stdout.write(status.diff)
            print(f"{name}: stale: {status.source_label} changed since it was generated; fix: {status.fix}")
        elif status.state == EDITED:
            if args.fix and args.force:
                from .output_dir import write_package

                write_package(directory, regenerate(status.source, status.class_name, status.in_tree), force=True)
                print(f"{name}: regenerated over hand edits ({', '.join(status.edited)})")
                fixed += 1
                continue
            problems += 1
            edited = ", ".join(status.edited)
            print(
                f"{name}: edited by hand: {edited} no longer match their recorded hash; regenerating would discard "
                f"the edit (keep it in the source pipeline instead); to discard it: {status.fix}"
            )
        elif status.state == SOURCE_MISSING:
            problems += 1
            print(f"{name}: source missing: {status.source_label} (recorded in its headers) does not exist")
        elif args.verbose:
            print(f"{name}: up to date")
    if not args.quiet and not problems and not fixed:
        print(f"{len(packages)} generated package(s) up to date")
    return EXIT_FAILED if problems or fixed else EXIT_OK


def _relative(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


# -- survey ------------------------------------------------------------------------------------------------------
class _ProgressBar:
    """A one-line progress bar on stderr (plain periodic lines when stderr is not a terminal)."""

    def __init__(self, label: str):
        self.label = label
        self.started = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.perf_counter() - self.started
        if self.tty:
            filled = int(30 * done / max(total, 1))
            bar = "#" * filled + "-" * (30 - filled)
            sys.stderr.write(f"\r{self.label} [{bar}] {done}/{total} {elapsed:5.1f}s")
            if done == total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif done * 10 // max(total, 1) > self.shown:
            self.shown = done * 10 // max(total, 1)
            _stderr(f"{self.label}: {done}/{total} files, {elapsed:.1f}s")


def command_survey(args) -> int:
    from .survey import CRASHED, markdown, run_survey, summary, table

    root = Path(args.directory)
    if not root.is_dir():
        raise InputError("not a directory", Location(args.directory))
    started = time.perf_counter()
    entries, files = run_survey(root, args.jobs, _ProgressBar("survey"))
    if args.verify:
        entries = _verify_survey(root, entries)
    stats = summary(entries, files, time.perf_counter() - started)
    crashed = [e for e in entries if e.status == CRASHED]
    if crashed:
        log = Path(args.log)
        log.write_text("\n".join(f"== {e.file} {e.class_name}\n{e.traceback}" for e in crashed), encoding="utf-8")
        _stderr(f"{len(crashed)} crash(es); tracebacks in {log}")
    report = {"pipelines": [e.as_json() for e in entries], "summary": stats}
    if args.json:
        _write_report(args.json, json.dumps(report, indent=2) + "\n")
    if args.markdown:
        _write_report(args.markdown, markdown(entries, stats))
    shown = table(stats, entries)
    print(shown, file=sys.stderr if "-" in (args.json, args.markdown) else sys.stdout)
    failed_verification = "verified" in stats and stats["verified_ok"] < stats["verified"]
    return EXIT_FAILED if crashed or failed_verification else EXIT_OK


def _write_report(target: str, text: str) -> None:
    if target == "-":
        sys.stdout.write(text)
    else:
        Path(target).write_text(text, encoding="utf-8")


def _verify_survey(root: Path, entries):
    """Verify (exact mode) every converted pipeline that has built-in tiny components.

    A package that does not import, crashes at run time, or where verify itself fails, is a failure with its error
    (`"ok": false`, a `failed` count, `"error"`), never a converted pipeline that merely went unverified; the survey
    goes on with the next one and ends with the failures listed on stderr.
    """
    import dataclasses
    import math

    from .convert import convert
    from .options import ConvertOptions
    from .output_dir import write_package
    from .source_file import read_source
    from .testing.equivalence import NoComponents
    from .verify import verify_package

    result, failures, announced = [], [], set()
    for entry in entries:
        if entry.status != "converted":
            result.append(entry)
            continue

        def announce(_line: str, key: tuple[str, str] = (entry.file, entry.class_name)) -> None:
            if key not in announced:  # once per pipeline, when its first case ran (there are components for it)
                announced.add(key)
                _stderr(f"verifying {key[1]} ...")

        with tempfile.TemporaryDirectory() as directory:
            try:
                source = read_source(str(root / entry.file))
                options = ConvertOptions(entry.file, source.label, source.module_name, entry.class_name)
                package = Path(directory) / "package"
                write_package(package, convert(source.text, options))
                report = verify_package(package, exact=True, progress=announce)
            except NoComponents:
                result.append(entry)  # nothing built in for it: not verified, not failed
                continue
            except Exception as error:  # the package does not import, or verify cannot run it at all
                report, crash = None, f"{type(error).__name__}: {error}"
        if report is None:
            equivalence = {"ok": False, "runs": 0, "failed": 1, "bitwise": False, "max_abs_diff": None}
            equivalence["error"] = crash[:300]
        else:
            compared = [c for c in report.cases if c.status == "compared"]
            failed = [c for c in report.cases if c.status == "failed"]
            finite = [c.max_abs_diff for c in compared if math.isfinite(c.max_abs_diff)]
            equivalence = {
                "ok": report.ok,
                "runs": len(report.cases),
                "failed": len(failed),
                "bitwise": bool(compared) and not failed and all(c.bitwise for c in compared),
                # strict JSON: no `Infinity` for a run that failed (it is counted above)
                "max_abs_diff": max(finite, default=None) if len(finite) == len(compared) else None,
            }
            if not report.ok:
                equivalence["error"] = report.problem
        if not equivalence["ok"]:
            failures.append((entry, equivalence["error"]))
            _stderr(f"  {entry.class_name}: FAILED ({equivalence['error']})")
        result.append(dataclasses.replace(entry, equivalence=equivalence))
    verified = [e for e in result if e.equivalence is not None]
    if verified:
        _stderr(f"verify: {len(verified)} verified, {len(verified) - len(failures)} ok, {len(failures)} failed")
        for entry, error in failures:
            _stderr(f"  FAILED {entry.file} {entry.class_name}: {error}")
    return result


# -- verify ------------------------------------------------------------------------------------------------------
def _verify(package: Path, args, progress=True):
    from .verify import components_factory, parse_case, verify_package

    extra = [parse_case(text, index + 1) for index, text in enumerate(args.case or [])]
    components = components_factory(args.components) if args.components else None
    return verify_package(
        package,
        cases=[] if args.no_default_cases else None,
        extra_cases=extra,
        exact=args.exact,
        components=components,
        seed=args.seed,
        atol=args.atol,
        progress=_stderr if progress else None,
    )


def _print_report(report, png: Path | None) -> None:
    compared = [c for c in report.cases if c.status != "skipped"]
    verdict = "OK" if report.ok else ("DIFFERENT" if compared else "NOTHING COMPARED (every case was skipped)")
    print(f"{report.pipeline}: {verdict} ({len(report.cases)} runs, atol {report.atol:g})")
    width = max((len(c.name) for c in report.cases), default=4)
    print(f"  {'case'.ljust(width)}  mode   max abs diff  bitwise  result")
    for case in report.cases:
        result = case.status if case.status != "compared" else ("pass" if case.passed else "FAIL")
        diff, bitwise = f"{case.max_abs_diff:12.3g}", "yes" if case.bitwise else "no"
        if case.status == "skipped":
            diff, bitwise = f"{'-':>12}", "-"
        print(
            f"  {case.name.ljust(width)}  {case.mode.ljust(5)}  {diff}  {bitwise:7}  {result}"
            + (f"  ({case.reason})" if case.reason else "")
            + (f"  first diverging block: {case.first_diverging_block}" if case.first_diverging_block else "")
        )
    if png is not None:
        print(f"standard | modular | difference: {png}")


def _finish_verify(report, package: Path, args) -> int:
    from .report_image import save_comparison

    png = None
    if not args.no_png:
        target = Path(args.png) if args.png else Path(f"verify_{package.resolve().name}.png")
        png = save_comparison(report.images, target)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        _print_report(report, png)
    return EXIT_OK if report.ok else EXIT_FAILED


def command_verify(args) -> int:
    package = Path(args.package)
    report = _verify(package, args)
    return _finish_verify(report, package, args)


def command_demo(args) -> int:
    from .source_file import installed_diffusers_file

    args.pipeline = str(installed_diffusers_file(DEMO_SOURCE))
    args.class_name, args.check, args.diff, args.in_tree, args.force = None, False, False, False, False
    args.quiet = True  # stdout carries only the report (JSON with --json)
    started = time.perf_counter()
    code = command_convert(args)
    if code != EXIT_OK:
        return code
    package = Path(args.output) if args.output else Path("modular_stable_diffusion")
    _stderr(f"converted {args.pipeline} -> {package}/ in {time.perf_counter() - started:.2f}s")
    _stderr(f"verifying {package} against StableDiffusionPipeline (plain and exact mode)...")
    report = _verify(package, args)
    return _finish_verify(report, package, args)


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
        "a modular pipeline package. Nothing is written unless the whole package was generated.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    convert.add_argument("pipeline", metavar="PIPELINE_FILE", help="a standard pipeline module (pipeline_*.py)")
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
    convert.set_defaults(handler=command_convert)

    plan = commands.add_parser(
        "plan",
        help="print the conversion plan (blocks, inputs/outputs, components, guidance, what is dropped)",
        description="Print every decision the converter makes for PIPELINE_FILE, without writing anything.",
    )
    plan.add_argument("pipeline", metavar="PIPELINE_FILE")
    plan.add_argument("--class", dest="class_name", metavar="NAME", help="pipeline class, if the module has several")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(handler=command_plan)

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
    verify.set_defaults(handler=command_verify)

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
    check.set_defaults(handler=command_check)

    survey = commands.add_parser(
        "survey",
        help="convert every pipeline class under a directory and report converted / refused / crashed",
        description="Convert every pipeline class in every pipeline_*.py under DIRECTORY (statically: nothing is "
        "imported), in parallel, and report per class the outcome, the located refusal reason, the guidance "
        "pattern, the number of blocks and the time taken. Refusal reasons are grouped and counted.",
        epilog="exit codes: 0 nothing crashed (and, with --verify, every verified package equal), 1 otherwise, "
        "2 usage errors",
    )
    survey.add_argument("directory", metavar="DIRECTORY", help="e.g. the installed diffusers' pipelines/ directory")
    survey.add_argument("-j", "--jobs", type=int, default=None, help="worker processes (default: one per CPU)")
    survey.add_argument("--json", metavar="PATH", help="write the report as JSON (`-`: standard output)")
    survey.add_argument("--markdown", metavar="PATH", help="write the report as Markdown (`-`: standard output)")
    survey.add_argument("--log", metavar="PATH", default="modularize-survey.log", help="where crash tracebacks go")
    survey.add_argument(
        "--verify", action="store_true", help="also verify (exact mode) converted pipelines with tiny components"
    )
    survey.set_defaults(handler=command_survey)

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
    emit.set_defaults(handler=command_emit_tests)

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
    demo.set_defaults(handler=command_demo, exact=True)
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
        return args.handler(args)
    except ModularizeError as error:
        _stderr(f"modularize: error: {error}")
        return error.exit_code
    except KeyboardInterrupt:
        _stderr("modularize: interrupted")
        return 130
    except Exception as error:  # a bug in modularize, not a user error: keep the traceback, out of the way
        log = Path(tempfile.gettempdir()) / f"modularize-crash-{os.getpid()}.log"
        log.write_text(traceback.format_exc(), encoding="utf-8")
        _stderr(f"modularize: internal error: {type(error).__name__}: {error} (traceback in {log}; please report it)")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
