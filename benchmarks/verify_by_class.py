"""Verify every converted pipeline class of the installed diffusers on tiny components (plain + exact mode).

    .venv/bin/python benchmarks/verify_by_class.py [--survey survey.json] [--only CLASS ...] [--all-by-class]
                                                   [--json OUT] [--timeout SECONDS]

Lists the converted classes (from `--survey`, a `modularize survey --json` report, or by running the survey),
converts each and verifies it with the hand-written setup where there is one, else with components built by
component class (`--all-by-class`: by class for every pipeline). Prints per class one of: verified bitwise /
differs (case, reason, first diverging block) / missing component class X / setup error, then the totals and the
time. One class at a time, in one child process (replaced after a class that times out), on one thread.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections import Counter
from pathlib import Path

from modularize.commands.survey import ERROR, describe, verify_entry
from modularize.frontend.source_file import installed_diffusers_file


def converted_classes(root: Path, survey: str | None) -> list[tuple[str, str]]:
    if survey:
        entries = json.loads(Path(survey).read_text())["pipelines"]
        return [(e["file"], e["class"]) for e in entries if e["status"] == "converted"]
    from modularize.commands.survey import CONVERTED, run_survey

    entries, _ = run_survey(root, jobs=1)  # one core, like the verification
    return [(e.file, e.class_name) for e in entries if e.status == CONVERTED]


class _Worker:
    """One child process verifying classes one at a time; replaced by a fresh one when a class times out (a
    single long kernel cannot be interrupted from inside the process)."""

    def __init__(self, root: Path, by_class: bool):
        self.root, self.by_class = root, by_class
        self.process = None

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, self.root, self.by_class), daemon=True)
        self.process.start()

    def verify(self, file: str, class_name: str, timeout: float) -> dict:
        if self.process is None or not self.process.is_alive():
            self._start()
        self.connection.send((file, class_name))
        if self.connection.poll(timeout):
            try:
                return self.connection.recv()
            except EOFError:
                pass
        self.stop()
        return {"status": ERROR, "ok": False, "error": f"no verdict within {timeout:g} s", "seconds": None}

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.join()
            self.process = None


def _serve(connection, root: Path, by_class: bool) -> None:
    if by_class:  # no hand-written setup is found: every pipeline is built by component class
        from modularize.testing import tiny

        tiny.SETUPS = {}
    while True:
        file, class_name = connection.recv()
        verdict = verify_entry(root, file, class_name)
        if verdict is None:
            verdict = {"status": ERROR, "ok": False, "error": "no components", "seconds": None}
        connection.send(verdict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--survey", help="a `modularize survey --json` report of the installed pipelines/")
    parser.add_argument("--only", nargs="*", help="verify only these classes")
    parser.add_argument("--all-by-class", action="store_true", help="by-class components for every pipeline")
    parser.add_argument("--json", help="write the verdicts here")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per class")
    args = parser.parse_args()
    from modularize.testing.tiny import setup_for

    root = installed_diffusers_file("pipelines/__init__.py").parent
    classes = converted_classes(root, args.survey)
    if args.only:
        classes = [(f, c) for f, c in classes if c in set(args.only)]
    started = time.perf_counter()
    verdicts = {}
    worker = _Worker(root, args.all_by_class)
    width = max((len(c) for _, c in classes), default=10)
    for file, class_name in classes:
        hand_written = setup_for(class_name) is not None and not args.all_by_class
        verdict = worker.verify(file, class_name, args.timeout)
        verdict["setup"] = "hand-written" if hand_written else "by class"
        verdicts[class_name] = {"file": file, **verdict}
        seconds = verdict.get("seconds")
        took = f"{seconds:6.1f}s" if seconds is not None else "   -  "
        alone = verdict.get("blocks_alone")
        alone_text = f"; blocks alone {alone['equal']}/{alone['blocks']}" if alone else ""
        print(f"{class_name.ljust(width)}  {took}  [{verdict['setup']}]  {describe(verdict)}{alone_text}", flush=True)
        for key, what in (alone or {}).get("failing", {}).items():
            print(f"    block {key} alone: {what}", flush=True)
    worker.stop()
    elapsed = time.perf_counter() - started
    totals = Counter(v["status"] for v in verdicts.values())
    new = [v for v in verdicts.values() if v["setup"] == "by class"]
    print()
    share = 100 * totals["verified"] / max(len(verdicts), 1)
    print(
        f"verified bitwise: {totals['verified']} of {len(verdicts)} converted classes ({share:.1f}%) in {elapsed:.0f} s"
    )
    for status in ("verified", "differs", "missing", "error"):
        share = 100 * totals[status] / max(len(verdicts), 1)
        print(f"  {status:9s} {totals[status]:4d}  ({share:.1f}%)")
    print(f"  by class: {sum(v['status'] == 'verified' for v in new)} of {len(new)} verified bitwise")
    alone = [v["blocks_alone"] for v in verdicts.values() if v.get("blocks_alone")]
    whole = sum(a["equal"] == a["blocks"] and a["blocks"] > 0 for a in alone)
    blocks, equal = sum(a["blocks"] for a in alone), sum(a["equal"] for a in alone)
    print(f"  blocks alone: every block of {whole} of {len(alone)} packages; {equal} of {blocks} blocks bitwise")
    if args.json:
        Path(args.json).write_text(json.dumps({"classes": verdicts, "seconds": round(elapsed, 1)}, indent=2) + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
