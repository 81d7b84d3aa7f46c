"""Every directory of the installed diffusers' `pipelines/` as families: converted, refused (and why) or crashed.

    .venv/bin/python benchmarks/family_survey.py [--jobs 2] [--only controlnet flux ...]

For each directory, the pipeline classes that convert on their own (the single-pipeline converter in process) are
tried as one family, and, where the directory holds classes of several models, each group of classes whose names
start with the same model prefix (`StableDiffusionXL...`, `Flux...`, by the words of the class name): the family
planner and emitter in process, nothing written, nothing run. It prints one line per family tried and the counts;
a crash (anything but a refusal naming its reason) is a converter bug. With `--verify`, each converted family is
also verified (every workflow through the family's pipeline, plain and exact, `modularize verify --exact`): runs,
runs compared, bitwise runs and failed runs (the generated pipeline failed where the standard one ran; the
others are cases the standard pipeline rejects). `verify_families.py` runs the families
it lists; this one finds which others convert at all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from modularize.commands.survey import pipeline_files
from modularize.convert import ConvertOptions, convert_family, plan_for
from modularize.errors import ModularizeError
from modularize.frontend.parse import is_pipeline_class, parse_source
from modularize.frontend.source_file import installed_diffusers_file, module_reader, read_source
from modularize.planning.naming import words_of


def converting_classes(path: Path) -> list[tuple[str, str]]:
    """(class, the label `file::class`) of each pipeline class of the file that converts on its own."""
    import libcst as cst

    source = read_source(str(path))
    try:
        parsed = parse_source(source.text, str(path), source.label, source.module_name)
    except ModularizeError:
        return []
    classes = [c.name.value for c in parsed.tree.body if isinstance(c, cst.ClassDef) and is_pipeline_class(c)]
    found = []
    for name in classes:
        options = ConvertOptions(str(path), source.label, source.module_name, name)
        try:
            plan = plan_for(source.text, options, module_reader(path))
        except ModularizeError:
            continue
        if not plan.sub_pipelines:  # (a pipeline made of pipelines is no workflow of a family)
            found.append((name, str(path)))
    return found


def try_family(members: list[tuple[str, str]], verify: bool = False) -> tuple[str, str]:
    """(converted | refused | crashed, detail) of the family of `members` ((class, path) each); with `verify`, the
    converted package written to a temporary directory and verified (`modularize verify --exact`)."""
    sources = []
    for name, path in members:
        source = read_source(path)
        options = ConvertOptions(path, source.label, source.module_name, name)
        sources.append((source.text, options))
    try:
        files = convert_family(sources, module_reader(Path(members[0][1])))
    except ModularizeError as error:
        return "refused", str(error).splitlines()[0][:200]
    except Exception:
        return "crashed", traceback.format_exc(limit=-3)[-600:]
    if not verify:
        return "converted", f"{len(files)} files"
    with tempfile.TemporaryDirectory() as directory:
        package = Path(directory) / "modular_family"
        for name, text in files.items():
            (package / name).parent.mkdir(parents=True, exist_ok=True)
            (package / name).write_text(text, encoding="utf-8")
        command = [sys.executable, "-m", "modularize.cli", "verify", str(package), "--exact", "--json", "--no-png"]
        done = subprocess.run(command, capture_output=True, text=True)
        try:
            cases = json.loads(done.stdout)["cases"]
        except (ValueError, KeyError):
            return "converted", f"verify gave no report (exit {done.returncode}): {done.stderr.strip()[-200:]}"
    compared = [case for case in cases if case["status"] == "compared"]
    bitwise = sum(1 for case in compared if case["bitwise"])
    failed = sum(1 for case in cases if case["status"] == "failed")
    return "converted", f"{len(cases)} runs, {len(compared)} compared, {bitwise} bitwise, {failed} failed"


def families_of(directory: Path) -> list[list[tuple[str, str]]]:
    members = [member for path in pipeline_files(directory) for member in converting_classes(path)]
    if len(members) < 2:
        return []
    groups: dict[str, list[tuple[str, str]]] = {}
    for member in members:
        words = words_of(member[0])
        groups.setdefault("".join(words[:2]), []).append(member)
    found = [members]
    found += [group for group in groups.values() if 1 < len(group) < len(members)]
    return found


def survey_directory(directory: str, verify: bool = False) -> list[tuple[str, list[str], str, str]]:
    rows = []
    for members in families_of(Path(directory)):
        status, detail = try_family(members, verify)
        rows.append((Path(directory).name, [name for name, _ in members], status, detail))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="+", help="directories of pipelines/ to try (default: all)")
    parser.add_argument("--verify", action="store_true", help="verify each converted family (minutes each)")
    args = parser.parse_args()
    root = installed_diffusers_file("pipelines/__init__.py").parent
    directories = sorted(str(p) for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
    if args.only:
        directories = [d for d in directories if Path(d).name in args.only]
    counts = {"converted": 0, "refused": 0, "crashed": 0}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for rows in pool.map(survey_directory, directories, [args.verify] * len(directories)):
            for directory, names, status, detail in rows:
                counts[status] += 1
                print(f"{status:9} {directory}: {', '.join(names)}", flush=True)
                if status != "converted" or args.verify:
                    print(f"          {detail}", flush=True)
    print(", ".join(f"{count} {status}" for status, count in counts.items()), f"({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
