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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["class"] = data.pop("class_name")
        data.pop("traceback")
        if data["equivalence"] is None:
            data.pop("equivalence")
        return data


def pipeline_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("pipeline_*.py") if "__pycache__" not in p.parts)


def survey_file(path: str, root: str) -> list[Entry]:
    """Convert every pipeline class of one file (runs in a worker process)."""
    from ..analysis.analyze import analyze
    from ..convert import package_files
    from ..errors import ModularizeError
    from ..frontend.parse import is_pipeline_class, parse_source
    from ..frontend.source_file import label_of, module_name_of, read_source_text
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
            plan = analyze(source, class_name)
            options = ConvertOptions(relative, source.label, source.module_name, class_name)
            files = package_files(plan, text, options)
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
    root: Path, jobs: int | None = None, progress: Callable[[int, int], None] | None = None
) -> tuple[list[Entry], int]:
    """Entries for every pipeline class under `root`, in file order; and how many files were read."""
    files = pipeline_files(root)
    results: dict[str, list[Entry]] = {}
    workers = jobs or os.cpu_count() or 1
    if workers == 1:
        for index, path in enumerate(files):
            results[str(path)] = survey_file(str(path), str(root))
            if progress:
                progress(index + 1, len(files))
    else:
        # largest files first, so no worker is left converting a big one while the others are idle
        by_size = sorted(files, key=lambda path: (-path.stat().st_size, str(path)))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(survey_file, str(path), str(root)): str(path) for path in by_size}
            for done, future in enumerate(as_completed(futures), start=1):
                path = futures[future]
                try:
                    results[path] = future.result()
                except Exception as error:  # a worker died: still one entry per file, as crashed
                    relative = os.path.relpath(path, root)
                    results[path] = [Entry(relative, "", CRASHED, f"worker failed: {error}"[:300])]
                if progress:
                    progress(done, len(files))
    entries = [entry for path in files for entry in results.get(str(path), [])]
    return entries, len(files)


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
    verified = [e for e in entries if e.equivalence is not None]
    if verified:
        data["verified"] = len(verified)
        data["verified_ok"] = sum(1 for e in verified if e.equivalence.get("ok"))
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
    return "\n".join(lines)


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

    from ..convert import convert
    from ..frontend.source_file import read_source
    from ..options import ConvertOptions
    from ..output.write import write_package
    from ..testing.equivalence import NoComponents
    from .verify import verify_package

    result, failures, announced = [], [], set()
    for entry in entries:
        if entry.status != "converted":
            result.append(entry)
            continue

        def announce(_line: str, key: tuple[str, str] = (entry.file, entry.class_name)) -> None:
            if key not in announced:  # once per pipeline, when its first case ran (there are components for it)
                announced.add(key)
                stderr(f"verifying {key[1]} ...")

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
            stderr(f"  {entry.class_name}: FAILED ({equivalence['error']})")
        result.append(dataclasses.replace(entry, equivalence=equivalence))
    verified = [e for e in result if e.equivalence is not None]
    if verified:
        stderr(f"verify: {len(verified)} verified, {len(verified) - len(failures)} ok, {len(failures)} failed")
        for entry, error in failures:
            stderr(f"  FAILED {entry.file} {entry.class_name}: {error}")
    return result
