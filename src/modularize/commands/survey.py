"""`modularize survey DIR`: convert every pipeline class under a directory and report what happened to each.

Static only (nothing is imported), in parallel across processes, one task per file. Per pipeline class:

    converted  the package was generated (guidance pattern and block count recorded)
    refused    a located `ConversionError`: file, line, reason and construct
    crashed    any other exception: a converter bug; the traceback goes to the log, the survey goes on

Refusal reasons are grouped (`X` in a message stands for any name), so the most common gap shows first.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..collector import collector_paused
from ..cst.tree_walk import remembered_children
from ..errors import EXIT_FAILED, EXIT_OK, InputError, Location
from .console import stderr

CONVERTED, REFUSED, CRASHED = "converted", "refused", "crashed"


@dataclass(frozen=True)
class Entry:
    file: str
    class_name: str
    status: str
    reason: str = ""
    line: int = 0
    guidance: str = ""
    blocks: int = 0
    seconds: float = 0.0
    construct: str = ""
    traceback: str = ""
    # sha256 over the generated files (names and text): equal across runs means byte-identical output
    output_sha256: str = ""
    equivalence: dict[str, Any] | None = None
    # `--lint`: what ruff with diffusers' rule selection finds in the generated package (empty: clean)
    lint: tuple[str, ...] | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["class"] = data.pop("class_name")
        data.pop("traceback")
        for optional in ("equivalence", "lint"):
            if data[optional] is None:
                data.pop(optional)
        return data


def package_key(file: str, class_name: str) -> str:
    """The directory a surveyed class's package is linted in (one per file and class)."""
    return hashlib.sha256(f"{file}\0{class_name}".encode()).hexdigest()[:16]


def pipeline_files(root: Path) -> list[Path]:
    """The Python files under `root` that may hold a pipeline class, whatever they are named (users' own pipelines
    rarely follow diffusers' `pipeline_*.py`): those whose text mentions both `Pipeline` and `__call__`. A cheap
    filter before parsing; which classes are pipelines, the parsed class decides (`is_pipeline_class`)."""
    found = []
    for path in root.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            data = b"__call__ Pipeline"  # unreadable: surveyed, so that its row says why
        if b"__call__" in data and b"Pipeline" in data:
            found.append(path)
    return sorted(found)


@collector_paused()  # a file's classes all share its tree: one pause around them (see collector)
def survey_file(path: str, root: str, lint_root: str | None = None) -> list[Entry]:
    """Convert every pipeline class of one file (runs in a worker process); with `lint_root`, write each package
    there (`package_key`) for one ruff run over all of them."""
    # the classes' analyses walk the same tree: its nodes' children are computed once for all of them
    with remembered_children():
        return _survey_file(path, root, lint_root)


def _survey_file(path: str, root: str, lint_root: str | None) -> list[Entry]:
    from ..convert import package_files, plan_of
    from ..errors import ModularizeError
    from ..frontend.parse import is_pipeline_class, parse_source
    from ..frontend.source_file import label_of, module_name_of, module_reader, read_source_text
    from ..options import ConvertOptions

    relative = os.path.relpath(path, root)
    started = time.perf_counter()
    try:
        text = read_source_text(path)
        resolved = Path(path).resolve()
        source = parse_source(text, relative, label_of(resolved), module_name_of(resolved))
    except ModularizeError as error:
        line = error.location.line if error.location else 0
        construct = getattr(error, "construct", "")
        return [_with_time(Entry(relative, "", REFUSED, error.message, line, construct=construct), started)]
    except Exception as error:  # a converter bug while reading the file: one crashed row, the survey goes on
        entry = Entry(relative, "", CRASHED, _reason(error), traceback=traceback.format_exc())
        return [_with_time(entry, started)]
    import libcst as cst

    classes = [c.name.value for c in source.tree.body if isinstance(c, cst.ClassDef) and is_pipeline_class(c)]
    entries = []
    for class_name in classes:
        started = time.perf_counter()
        try:
            plan = plan_of(source, class_name, module_reader(resolved))
            options = ConvertOptions(relative, source.label, source.module_name, class_name)
            files = package_files(plan, text, options)
            if lint_root is not None:
                _write_files(Path(lint_root) / package_key(relative, class_name), files)
            entry = Entry(
                relative,
                class_name,
                CONVERTED,
                guidance=plan.guidance.label,
                blocks=len(plan.blocks),
                output_sha256=output_digest(files),
            )
        except ModularizeError as error:
            line = error.location.line if error.location else 0
            construct = getattr(error, "construct", "")
            entry = Entry(relative, class_name, REFUSED, error.message, line, construct=construct)
        except Exception as error:  # a converter bug: record it and go on with the next class
            entry = Entry(relative, class_name, CRASHED, _reason(error), traceback=traceback.format_exc())
        entries.append(_with_time(entry, started))
    return entries


def _write_files(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        # (a pipeline made of pipelines has their packages in folders)
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text, encoding="utf-8")


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:300]


def output_digest(files: dict[str, str]) -> str:
    """One hash over a package's files (sorted names and texts), for comparing two runs of the converter."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return digest.hexdigest()


def _with_time(entry: Entry, started: float) -> Entry:
    return Entry(**{**asdict(entry), "seconds": round(time.perf_counter() - started, 3)})


def run_survey(
    root: Path,
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    lint_root: str | None = None,
) -> tuple[list[Entry], int]:
    """Entries for every pipeline class under `root`, in file order; and how many files were read."""
    files = pipeline_files(root)
    results: dict[str, list[Entry]] = {}
    workers = jobs or os.cpu_count() or 1
    if workers == 1:
        for index, path in enumerate(files):
            results[str(path)] = survey_file(str(path), str(root), lint_root)
            if progress:
                progress(index + 1, len(files))
    else:
        # largest files first, so no worker is left converting a big one while the others are idle
        by_size = sorted(files, key=lambda path: (-path.stat().st_size, str(path)))
        broken: list[str] = []
        done = 0
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(survey_file, str(path), str(root), lint_root): str(path) for path in by_size}
            for future in as_completed(futures):
                path = futures[future]
                try:
                    results[path] = future.result()
                except BrokenProcessPool:  # a worker died (and took the pool): its file is found below
                    broken.append(path)
                    continue
                done += 1
                if progress:
                    progress(done, len(files))
        # each file the dead pool left is surveyed in a process of its own: the one that kills its worker is one
        # crashed row, the others are surveyed as usual
        for path in sorted(broken):
            results[path] = _isolated(path, root, lint_root)
            done += 1
            if progress:
                progress(done, len(files))
    entries = [entry for path in files for entry in results.get(str(path), [])]
    return entries, len(files)


def _isolated(path: str, root: Path, lint_root: str | None) -> list[Entry]:
    with ProcessPoolExecutor(max_workers=1) as pool:
        try:
            return pool.submit(survey_file, path, str(root), lint_root).result()
        except BrokenProcessPool as error:
            relative = os.path.relpath(path, root)
            return [Entry(relative, "", CRASHED, f"worker died: {error}"[:300])]


def reason_group(reason: str) -> str:
    """`\\`add_text_embeds\\` is batched ...` -> `\\`X\\` is batched ...`: one group per kind of refusal."""
    parts = reason.split("`")
    return "`".join(part if index % 2 == 0 else "X" for index, part in enumerate(parts))


def summary(entries: Iterable[Entry], files: int, seconds: float) -> dict[str, Any]:
    entries = list(entries)
    by_status = Counter(entry.status for entry in entries)
    reasons = Counter(reason_group(entry.reason) for entry in entries if entry.status == REFUSED)
    guidance = Counter(entry.guidance for entry in entries if entry.status == CONVERTED)
    data = {
        "files": files,
        "pipelines": len(entries),
        "converted": by_status[CONVERTED],
        "refused": by_status[REFUSED],
        "crashed": by_status[CRASHED],
        "seconds": round(seconds, 2),
        "refusal_reasons": [{"reason": reason, "count": count} for reason, count in reasons.most_common()],
        "guidance_patterns": dict(sorted(guidance.items())),
    }
    checked = [e for e in entries if e.equivalence is not None]
    if checked:
        # `verified`: the classes verify could run (every one but those missing a component class)
        verified = [e for e in checked if e.equivalence.get("status") != "missing"]
        data["verified"] = len(verified)
        data["verified_ok"] = sum(1 for e in verified if e.equivalence.get("ok"))
        data["verification"] = dict(Counter(e.equivalence.get("status", "verified") for e in checked))
    linted = [e for e in entries if e.lint is not None]
    if linted:
        data["lint"] = {"packages": len(linted), "clean": sum(1 for e in linted if not e.lint)}
    return data


def markdown(entries: list[Entry], stats: dict[str, Any]) -> str:
    lines = [
        "# modularize survey",
        "",
        f"{stats['pipelines']} pipeline classes in {stats['files']} files, {stats['seconds']} s: "
        f"{stats['converted']} converted, {stats['refused']} refused, {stats['crashed']} crashed.",
        "",
        "## Refusal reasons",
        "",
        "| count | reason |",
        "| ---: | --- |",
    ]
    lines += [f"| {item['count']} | {item['reason'].replace('|', '/')} |" for item in stats["refusal_reasons"]]
    lines += ["", "## Pipelines", "", "| file | class | status | line | guidance | blocks | seconds | reason |"]
    lines.append("| --- | --- | --- | ---: | --- | ---: | ---: | --- |")
    for e in entries:
        reason = e.reason.replace("|", "/")
        lines.append(
            f"| {e.file} | {e.class_name} | {e.status} | {e.line or ''} | {e.guidance} | {e.blocks or ''} "
            f"| {e.seconds} | {reason} |"
        )
    return "\n".join(lines) + "\n"


def table(stats: dict[str, Any], entries: list[Entry], limit: int = 15) -> str:
    lines = [
        f"{stats['pipelines']} pipeline classes in {stats['files']} files in {stats['seconds']} s: "
        f"{stats['converted']} converted, {stats['refused']} refused, {stats['crashed']} crashed",
    ]
    if stats["guidance_patterns"]:
        patterns = ", ".join(f"{k}: {v}" for k, v in stats["guidance_patterns"].items())
        lines.append(f"converted, by guidance pattern: {patterns}")
    if stats["refusal_reasons"]:
        lines.append("most common refusals:")
        for item in stats["refusal_reasons"][:limit]:
            lines.append(f"  {item['count']:4d}  {item['reason']}")
    crashed = [e for e in entries if e.status == CRASHED]
    if crashed:
        lines.append("crashed (converter bugs):")
        lines += [f"  {e.file} {e.class_name}: {e.reason}" for e in crashed]
    if "verification" in stats:
        lines += verification_rows(stats, entries)
    return "\n".join(lines)


def verification_rows(stats: dict[str, Any], entries: list[Entry]) -> list[str]:
    """The verify part of the table: the totals (with the share of converted classes verified bitwise), then one
    row per converted class with its verdict:

        verify: 85 of 96 converted verified bitwise (88.5%), 10 differ, 0 missing a component class, 1 setup error
          verified  FluxPipeline                 verified bitwise (18 runs)
          differs   QwenImage21Pipeline          differs: default (plain): generated pipeline failed: ...
          missing   KolorsPipeline               missing component classes: ChatGLMModel, ChatGLMTokenizer
    """
    counts = stats["verification"]
    share = 100 * counts.get(VERIFIED, 0) / max(stats["converted"], 1)
    lines = [
        f"verify: {counts.get(VERIFIED, 0)} of {stats['converted']} converted verified bitwise ({share:.1f}%), "
        f"{counts.get(DIFFERS, 0)} differ, {counts.get(MISSING, 0)} missing a component class, "
        f"{counts.get(ERROR, 0)} setup errors"
    ]
    checked = [e for e in entries if e.equivalence is not None]
    width = max(len(e.class_name) for e in checked)
    lines += [
        f"  {e.equivalence['status']:8s}  {e.class_name.ljust(width)}  {describe(e.equivalence)}" for e in checked
    ]
    return lines


# -- the command -------------------------------------------------------------------------------------------------
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
            stderr(f"{self.label}: {done}/{total} files, {elapsed:.1f}s")


def command_survey(args) -> int:
    from .survey import CRASHED, markdown, run_survey, summary, table

    root = Path(args.directory)
    if not root.is_dir():
        raise InputError("not a directory", Location(args.directory))
    started = time.perf_counter()
    if args.lint:
        entries, files = _linted_survey(root, args.jobs)
    else:
        entries, files = run_survey(root, args.jobs, _ProgressBar("survey"))
    if args.verify:
        entries = _verify_survey(root, entries)
    stats = summary(entries, files, time.perf_counter() - started)
    crashed = [e for e in entries if e.status == CRASHED]
    if crashed:
        log = Path(args.log)
        log.write_text("\n".join(f"== {e.file} {e.class_name}\n{e.traceback}" for e in crashed), encoding="utf-8")
        stderr(f"{len(crashed)} crash(es); tracebacks in {log}")
    report = {"pipelines": [e.as_json() for e in entries], "summary": stats}
    if args.json:
        _write_report(args.json, json.dumps(report, indent=2) + "\n")
    if args.markdown:
        _write_report(args.markdown, markdown(entries, stats))
    shown = table(stats, entries)
    print(shown, file=sys.stderr if "-" in (args.json, args.markdown) else sys.stdout)
    failed_verification = "verified" in stats and stats["verified_ok"] < stats["verified"]
    unclean = [e for e in entries if e.lint]
    for entry in unclean:
        stderr(
            f"lint: {entry.file} ({entry.class_name}): {entry.lint[0]}"
            + (f" (+{len(entry.lint) - 1})" if len(entry.lint) > 1 else "")
        )
    return EXIT_FAILED if crashed or failed_verification or unclean else EXIT_OK


def _linted_survey(root: Path, jobs: int | None) -> tuple[list[Entry], int]:
    """The survey, every converted package written to a temporary directory and checked by one ruff run."""
    from ..output.lint import lint_packages

    with tempfile.TemporaryDirectory(prefix="modularize-lint-") as directory:
        entries, files = run_survey(root, jobs, _ProgressBar("survey"), lint_root=directory)
        problems = lint_packages(Path(directory))
    linted = [
        replace(e, lint=problems.get(package_key(e.file, e.class_name), ())) if e.status == CONVERTED else e
        for e in entries
    ]
    return linted, files


def _write_report(target: str, text: str) -> None:
    if target == "-":
        sys.stdout.write(text)
    else:
        Path(target).write_text(text, encoding="utf-8")


VERIFIED, DIFFERS, MISSING, ERROR = "verified", "differs", "missing", "error"


def _verify_survey(root: Path, entries):
    """Verify (plain + exact mode) every converted pipeline on tiny components: its hand-written setup where there
    is one, else components built by component class (`testing.components`).

    Each gets one verdict (`equivalence["status"]`): *verified* (every case compared, bitwise), *differs* (a case
    differs, or the generated package fails where the standard pipeline runs), *error* (the package does not
    import, verify cannot run it, or the standard pipeline rejects every case), or *missing* (a component class
    no factory builds, named). A package that differs or errs is a failure with its error (`"ok": false`,
    `"error"`), never a converted pipeline that merely went unverified; a missing component class is reported,
    not failed. The survey goes on with the next one and ends with the failures listed on stderr.
    """
    import dataclasses

    result, failures = [], []
    for entry in entries:
        if entry.status != "converted":
            result.append(entry)
            continue
        stderr(f"verifying {entry.class_name} ...")
        equivalence = verify_entry(root, entry.file, entry.class_name)
        if equivalence is None:  # nothing built in for it at all: not verified, not failed
            result.append(entry)
            continue
        if equivalence["status"] == MISSING:
            stderr(f"  {entry.class_name}: {describe(equivalence)}")
        elif not equivalence["ok"]:
            failures.append((entry, equivalence["error"]))
            stderr(f"  {entry.class_name}: FAILED ({equivalence['error']})")
        result.append(dataclasses.replace(entry, equivalence=equivalence))
    verified = [e for e in result if e.equivalence is not None and e.equivalence["status"] != MISSING]
    if verified:
        stderr(f"verify: {len(verified)} verified, {len(verified) - len(failures)} ok, {len(failures)} failed")
        for entry, error in failures:
            stderr(f"  FAILED {entry.file} {entry.class_name}: {error}")
    return result


def verify_entry(root: Path, file: str, class_name: str) -> dict[str, Any] | None:
    """Convert `class_name` of `root / file` into a temporary package, verify it in plain and exact mode and return
    its verdict as JSON data (None when there are no components for it at all)."""
    import math

    from ..convert import convert
    from ..frontend.source_file import module_reader, read_source
    from ..options import ConvertOptions
    from ..output.write import write_package
    from ..testing.components import MissingComponentClass
    from ..testing.equivalence import NoComponents
    from .verify import verify_package

    started = time.perf_counter()

    def verdict(status: str, **data: Any) -> dict[str, Any]:
        return {"status": status, **data, "seconds": round(time.perf_counter() - started, 2)}

    with tempfile.TemporaryDirectory() as directory:
        try:
            source = read_source(str(root / file))
            options = ConvertOptions(file, source.label, source.module_name, class_name)
            package = Path(directory) / "package"
            write_package(package, convert(source.text, options, module_reader(root / file)))
            report = verify_package(package, exact=True)
            alone = _blocks_alone(package) if report.ok else None
        except MissingComponentClass as error:
            return verdict(MISSING, ok=False, missing=list(error.classes))
        except NoComponents:
            return None
        except Exception as error:  # the package does not import, or verify cannot run it at all
            crash = f"{type(error).__name__}: {error}"[:300]
            return verdict(ERROR, ok=False, runs=0, failed=1, bitwise=False, max_abs_diff=None, error=crash)
    compared = [c for c in report.cases if c.status == "compared"]
    failed = [c for c in report.cases if c.status == "failed"]
    finite = [c.max_abs_diff for c in compared if math.isfinite(c.max_abs_diff)]
    bitwise = bool(compared) and not failed and all(c.bitwise for c in compared)
    data: dict[str, Any] = {
        "ok": report.ok,
        "runs": len(report.cases),
        "failed": len(failed),
        "bitwise": bitwise,
        # strict JSON: no `Infinity` for a run that failed (it is counted above)
        "max_abs_diff": max(finite, default=None) if len(finite) == len(compared) else None,
    }
    skipped = [f"{c.name} ({c.mode}): {c.reason}"[:200] for c in report.cases if c.status == "skipped"]
    if skipped:
        data["skipped"] = skipped
    if alone is not None:
        data["blocks_alone"] = alone
    if not report.ok:
        data["error"] = report.problem
    if report.ok and bitwise:
        return verdict(VERIFIED, **data)
    if not compared and not failed:  # the standard pipeline rejected every case: the setup does not fit it
        return verdict(ERROR, **data)
    first = next((c for c in report.cases if c.status == "failed" or (c.status == "compared" and not c.bitwise)), None)
    if first is not None and first.first_diverging_block:
        data["first_diverging_block"] = first.first_diverging_block
    return verdict(DIFFERS, **data)


def _blocks_alone(package: Path) -> dict[str, Any]:
    """Every block of the package run alone on what it declares (`testing.standalone_blocks`): how many give the
    full run's outputs bitwise, and what the others did."""
    from ..testing.standalone_blocks import blocks_alone

    try:
        results = blocks_alone(package)
    except Exception as error:  # the full run it observes failed: the verdict above says why
        return {"equal": 0, "blocks": 0, "error": f"{type(error).__name__}: {error}"[:200]}
    failing = {r.key: f"{r.status}: {r.detail}"[:200] for r in results if r.status != "equal"}
    return {"equal": len(results) - len(failing), "blocks": len(results), **({"failing": failing} if failing else {})}


def describe(equivalence: dict[str, Any]) -> str:
    """One line: `verified bitwise (26 runs)`, `missing component class: X`, `differs: <case>: <reason>`."""
    status = equivalence["status"]
    if status == VERIFIED:
        skipped = f", {len(equivalence['skipped'])} skipped" if equivalence.get("skipped") else ""
        return f"verified bitwise ({equivalence['runs']} runs{skipped})"
    if status == MISSING:
        label = "missing component class" if len(equivalence["missing"]) == 1 else "missing component classes"
        return f"{label}: {', '.join(equivalence['missing'])}"
    if status == ERROR:
        return f"setup error: {equivalence['error']}"
    if equivalence["ok"]:
        return f"differs within atol (max abs diff {equivalence['max_abs_diff']:.3g}), not bitwise"
    # one line: an error's first (torch's argument errors go on to list every overload)
    error, where = equivalence["error"].splitlines()[0], equivalence.get("first_diverging_block")
    return f"differs: {error}" + (f"; first diverging block: {where}" if where and where not in error else "")
