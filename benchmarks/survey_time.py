"""Wall time of `modularize survey` over the installed diffusers' pipelines/, measured against parsing its files.

    .venv/bin/python benchmarks/survey_time.py [--jobs 2]

In one run (so the ratio holds on a busy machine) it runs the survey as a user would (a fresh process, static
conversion only, `-j 2` by default) and times one process doing nothing but `libcst.parse_module` on the same
files; it prints both, their ratio (target <= 2) and the survey's wall time (target < 30 s on 2 cores), then the
number of files and pipeline classes and the converted / refused / crashed counts.

On a busy machine wall times stretch with the load; the CPU seconds of each side (all its processes) stretch far
less, so it also prints the ratio an idle machine would show: the survey's CPU time spread over its workers,
against the parse's CPU time.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from modularize.commands.survey import pipeline_files
from modularize.frontend.source_file import installed_diffusers_file

RATIO_TARGET = 2.0
WALL_TARGET = 30.0

# One fresh process that reads and parses every file, as the survey's workers do before converting anything.
PARSE_ONLY = """
import sys, time
started = time.perf_counter()
import libcst
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        libcst.parse_module(text)
    except libcst.ParserSyntaxError:
        pass
print(time.perf_counter() - started)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    pipelines = installed_diffusers_file("pipelines/__init__.py").parent
    files = [str(path) for path in pipeline_files(pipelines)]

    cpu_started = _children_cpu()
    parse = subprocess.run([sys.executable, "-c", PARSE_ONLY, *files], check=True, capture_output=True, text=True)
    parse_seconds = float(parse.stdout.strip())
    parse_cpu = _children_cpu() - cpu_started
    with tempfile.TemporaryDirectory() as directory:
        report_path = Path(directory) / "survey.json"
        command = [sys.executable, "-m", "modularize.cli", "survey", str(pipelines), "-j", str(args.jobs)]
        cpu_started, started = _children_cpu(), time.perf_counter()
        subprocess.run([*command, "--json", str(report_path)], check=False, capture_output=True)
        elapsed = time.perf_counter() - started
        survey_cpu = _children_cpu() - cpu_started
        summary = json.loads(report_path.read_text())["summary"]
    print(f"survey of {pipelines} with {args.jobs} worker processes")
    print(f"  survey wall time         {elapsed:6.1f} s  (target < {WALL_TARGET:g} s on 2 cores)")
    print(f"  LibCST parse, 1 process  {parse_seconds:6.1f} s  ({len(files)} files)")
    print(f"  ratio                    {elapsed / parse_seconds:6.2f}    (target <= {RATIO_TARGET:g})")
    print(f"  CPU time: survey {survey_cpu:.1f} s (all processes), parse {parse_cpu:.1f} s")
    print(
        f"  idle-machine ratio       {survey_cpu / args.jobs / parse_cpu:6.2f}    (survey CPU / {args.jobs} workers / parse CPU)"
    )
    print(f"  files       {summary['files']:6d}   pipeline classes {summary['pipelines']}")
    print(f"  converted   {summary['converted']:6d}   refused {summary['refused']}   crashed {summary['crashed']}")


def _children_cpu() -> float:
    """CPU seconds of every finished child process (and their children), user and system."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
