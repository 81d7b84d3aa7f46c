"""`modularize survey DIR`: convert every pipeline class under a directory and report what happened to each.

Static only (nothing is imported), in parallel across processes, one task per file. Per pipeline class:

    converted  the package was generated (guidance pattern and block count recorded)
    refused    a located `ConversionError`: file, line, reason and construct
    crashed    any other exception: a converter bug; the traceback goes to the log, the survey goes on

Refusal reasons are grouped (`X` in a message stands for any name), so the most common gap shows first.
"""

from __future__ import annotations

import hashlib
import os
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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
        broken: list[str] = []
        done = 0
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(survey_file, str(path), str(root)): str(path) for path in by_size}
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
            results[path] = _isolated(path, root)
            done += 1
            if progress:
                progress(done, len(files))
    entries = [entry for path in files for entry in results.get(str(path), [])]
    return entries, len(files)


def _isolated(path: str, root: Path) -> list[Entry]:
    with ProcessPoolExecutor(max_workers=1) as pool:
        try:
            return pool.submit(survey_file, path, str(root)).result()
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
