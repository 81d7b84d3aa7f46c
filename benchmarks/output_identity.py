"""Byte-identical output across a converter change: survey the installed diffusers' pipelines, compare to a saved run.

    .venv/bin/python benchmarks/output_identity.py --save before.json      # on the old commit
    .venv/bin/python benchmarks/output_identity.py --against before.json   # on the new one

Each converted class is compared by the sha256 over its generated files; each refused class by its line and reason.
Prints the counts and every class whose outcome changed; exits 1 when any did.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from modularize.frontend.source_file import installed_diffusers_file


def outcomes(report: dict) -> dict[str, tuple]:
    return {
        f"{entry['file']}::{entry['class']}": (
            entry["status"],
            entry.get("line", 0),
            entry.get("reason", ""),
            entry.get("output_sha256", ""),
        )
        for entry in report["pipelines"]
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--save", metavar="PATH", help="write this run's survey report here")
    parser.add_argument("--against", metavar="PATH", help="a report saved by an earlier run to compare with")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    pipelines = installed_diffusers_file("pipelines/__init__.py").parent
    with tempfile.TemporaryDirectory() as directory:
        path = Path(args.save or Path(directory) / "survey.json")
        command = [sys.executable, "-m", "modularize.cli", "survey", str(pipelines), "-j", str(args.jobs)]
        subprocess.run([*command, "--json", str(path)], check=False, capture_output=True)
        report = json.loads(path.read_text())
    now = outcomes(report)
    summary = report["summary"]
    print(
        f"{summary['pipelines']} classes: {summary['converted']} converted, {summary['refused']} refused, "
        f"{summary['crashed']} crashed"
    )
    if not args.against:
        return 0
    before = outcomes(json.loads(Path(args.against).read_text()))
    changed = sorted(key for key in set(before) | set(now) if before.get(key) != now.get(key))
    same_bytes = sum(1 for key, value in now.items() if value[0] == "converted" and before.get(key) == value)
    print(
        f"identical to {args.against}: {len(now) - len(changed)} of {len(now)} classes "
        f"({same_bytes} converted with byte-identical output); changed: {len(changed)}"
    )
    for key in changed:
        print(f"  {key}: {before.get(key, ('absent',))[:3]} -> {now.get(key, ('absent',))[:3]}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
