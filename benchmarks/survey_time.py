"""Wall time of `modularize survey` over the installed diffusers' pipelines/ directory (target: under 60 s).

    .venv/bin/python benchmarks/survey_time.py [--jobs 2]

Runs the survey as a user would (a fresh process, static conversion only) and prints its wall time, the number of
files and pipeline classes, and the converted / refused / crashed counts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from modularize.frontend.source_file import installed_diffusers_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    pipelines = installed_diffusers_file("pipelines/__init__.py").parent
    with tempfile.TemporaryDirectory() as directory:
        report_path = Path(directory) / "survey.json"
        command = [sys.executable, "-m", "modularize.cli", "survey", str(pipelines), "-j", str(args.jobs)]
        started = time.perf_counter()
        subprocess.run([*command, "--json", str(report_path)], check=False, capture_output=True)
        elapsed = time.perf_counter() - started
        summary = json.loads(report_path.read_text())["summary"]
    print(f"survey of {pipelines} with {args.jobs} worker processes")
    print(f"  wall time   {elapsed:6.1f} s  (target < 60 s)")
    print(f"  files       {summary['files']:6d}   pipeline classes {summary['pipelines']}")
    print(f"  converted   {summary['converted']:6d}   refused {summary['refused']}   crashed {summary['crashed']}")


if __name__ == "__main__":
    main()
