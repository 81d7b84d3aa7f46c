"""Wall time of `modularize check` on a repository holding 20 generated packages.

    .venv/bin/python benchmarks/drift_check.py [--packages 20] [--repeat 7]

Builds a temporary git repository with N copies of the toy pipeline, each converted into its own package, then
times `modularize check` as pre-commit runs it (a fresh process from the repository root): with nothing changed
(target: under 1 s in total) and with one source changed (one package regenerated in memory and diffed). Also
reports whether the check imported torch or diffusers (it must not).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOY = ROOT / "fixtures" / "pipelines" / "pipeline_toy.py"
PROBE = (
    "import sys; from modularize.cli import main; code = main(['check', '-q']);"
    "print('imported:', [m for m in ('torch', 'diffusers') if m in sys.modules]); sys.exit(code)"
)


def timed(command: list[str], cwd: Path, repeat: int) -> tuple[float, int]:
    times, code = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        code = subprocess.run(command, cwd=cwd, capture_output=True).returncode
        times.append(time.perf_counter() - started)
    return statistics.median(times), code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packages", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    modularize = [sys.executable, "-m", "modularize.cli"]

    with tempfile.TemporaryDirectory() as directory:
        repo = Path(directory)
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        (repo / "pipelines").mkdir()
        started = time.perf_counter()
        for index in range(args.packages):
            source = repo / "pipelines" / f"pipeline_toy_{index:02d}.py"
            shutil.copy(TOY, source)
            command = [*modularize, str(source.relative_to(repo)), "-o", f"modular_toy_{index:02d}", "-q"]
            subprocess.run(command, cwd=repo, check=True)
        setup = time.perf_counter() - started

        clean, clean_code = timed([*modularize, "check", "-q"], repo, args.repeat)
        imported = subprocess.run([sys.executable, "-c", PROBE], cwd=repo, capture_output=True, text=True).stdout
        first = repo / "pipelines" / "pipeline_toy_00.py"
        first.write_text(first.read_text().replace("# 2. Encode the prompts", "# 2. Encode prompts"))
        stale, stale_code = timed([*modularize, "check"], repo, args.repeat)
        selected, _ = timed([*modularize, "check", "pipelines/pipeline_toy_05.py"], repo, args.repeat)

    print(
        f"{args.packages} generated packages ({setup:.1f}s to convert them); medians of {args.repeat} fresh processes"
    )
    print(f"  nothing changed          {clean * 1000:7.0f} ms  exit {clean_code}  (target < 1000 ms)")
    print(
        f"  one source changed       {stale * 1000:7.0f} ms  exit {stale_code}  (one package regenerated and diffed)"
    )
    print(f"  one unchanged file given {selected * 1000:7.0f} ms  (pre-commit passes only the changed files)")
    print(f"  {imported.strip()}")


if __name__ == "__main__":
    main()
