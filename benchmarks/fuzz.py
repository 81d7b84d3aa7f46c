"""Seeded mutation fuzz of the converter over the installed diffusers' pipelines (see modularize.testing.fuzz).

    .venv/bin/python benchmarks/fuzz.py --seed 0 --count 3000 --jobs 2
    .venv/bin/python benchmarks/fuzz.py --seed 0 --index 1234 --show      # one variant: its mutation and outcome
    .venv/bin/python benchmarks/fuzz.py --deletions pipelines/stable_diffusion/pipeline_stable_diffusion.py

Every variant is converted in-process (parallel across --jobs processes). It must convert to files that compile and
define every name they read, be refused with a location, or be rejected as a user error (a mutation that breaks the
syntax); anything else is a failure: crashed (an exception that is not a `ModularizeError`), invalid (generated code
that does not compile), nondeterministic (one in --twice-every variants is converted twice and compared byte for
byte). Prints the figures and the failures grouped by where they were raised; exits 1 when there is any.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

from modularize.frontend.source_file import installed_diffusers_file
from modularize.testing import fuzz

_FILES: list[Path] = []


def _init(root: str) -> None:
    _FILES[:] = fuzz.corpus_files(Path(root))


def _one(task: tuple[int, int, bool]) -> fuzz.Outcome | None:
    seed, index, twice = task
    return fuzz.run_variant(_FILES, seed, index, twice)


def _deletion(task: tuple[str, int]) -> fuzz.Outcome:
    path, number = task
    return fuzz.convert_variant(fuzz.deletions(Path(path))[number])


def run(root: Path, seed: int, count: int, jobs: int, twice_every: int, progress: bool = True):
    tasks = [(seed, index, twice_every > 0 and index % twice_every == 0) for index in range(count)]
    return _run_tasks(root, _one, tasks, jobs, progress)


def _run_tasks(root: Path, function, tasks, jobs: int, progress: bool):
    started = time.perf_counter()
    outcomes = []
    if jobs == 1:
        _init(str(root))
        results = map(function, tasks)
        pool = None
    else:
        pool = ProcessPoolExecutor(max_workers=jobs, initializer=_init, initargs=(str(root),))
        results = pool.map(function, tasks, chunksize=4)
    try:
        for done, outcome in enumerate(results, start=1):
            if outcome is not None:
                outcomes.append(outcome)
            if progress and (done % 100 == 0 or done == len(tasks)):
                failed = sum(o.status in (fuzz.CRASHED, fuzz.INVALID, fuzz.NONDETERMINISTIC) for o in outcomes)
                elapsed = time.perf_counter() - started
                print(f"  {done}/{len(tasks)} variants, {failed} failed, {elapsed:.0f}s", file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return outcomes, time.perf_counter() - started


def report(outcomes, seconds: float, log: Path | None) -> int:
    stats = fuzz.summarize(outcomes, seconds)
    print(
        f"variants: {stats['variants']}  converted: {stats['converted']}  refused: {stats['refused']}  "
        f"rejected (user error): {stats['rejected']}  crashed: {stats['crashed']}  invalid: {stats['invalid']}  "
        f"nondeterministic: {stats['nondeterministic']}  time: {stats['seconds']}s"
    )
    kinds = Counter((o.kind, o.status) for o in outcomes)
    for kind in fuzz.KINDS:
        row = ", ".join(f"{status} {kinds[(kind, status)]}" for status in ("converted", "refused", "rejected"))
        print(f"  {kind:10} {row}")
    failures = [o for o in outcomes if o.status in (fuzz.CRASHED, fuzz.INVALID, fuzz.NONDETERMINISTIC)]
    groups = Counter(o.signature or o.status for o in failures)
    for signature, number in groups.most_common():
        example = next(o for o in failures if (o.signature or o.status) == signature)
        print(f"{number:5d}  {signature}")
        print(
            f"       e.g. --seed {example.seed} --index {example.index}: {Path(example.path).name} "
            f"{example.class_name}: {example.description}: {example.detail[:160]}"
        )
    if log is not None:
        log.write_text("\n".join(json.dumps(asdict(o)) for o in outcomes) + "\n", encoding="utf-8")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--twice-every", type=int, default=10, help="convert every Nth variant twice (0: never)")
    parser.add_argument("--root", help="directory of pipeline modules (default: the installed diffusers' pipelines)")
    parser.add_argument("--index", type=int, help="run only this variant and show it")
    parser.add_argument("--show", action="store_true", help="with --index: print the mutated source's diff")
    parser.add_argument("--deletions", metavar="FILE", help="every single-statement deletion from __call__ of FILE")
    parser.add_argument("--log", help="write every outcome as JSON lines here")
    args = parser.parse_args()
    if args.jobs < 1 or args.count < 0:
        parser.error("--jobs must be at least 1 and --count not negative")
    root = Path(args.root) if args.root else installed_diffusers_file("pipelines/__init__.py").parent
    if args.index is not None:
        return _show(root, args.seed, args.index, args.show)
    if args.deletions:
        path = Path(args.deletions)
        if not path.is_absolute() and not path.exists():
            path = root.parent / args.deletions
        tasks = [(str(path), number) for number in range(len(fuzz.deletions(path)))]
        outcomes, seconds = _run_tasks(root, _deletion, tasks, args.jobs, progress=True)
    else:
        outcomes, seconds = run(root, args.seed, args.count, args.jobs, args.twice_every)
    return report(outcomes, seconds, Path(args.log) if args.log else None)


def _show(root: Path, seed: int, index: int, show: bool) -> int:
    import difflib

    files = fuzz.corpus_files(root)
    variant = fuzz.make_variant(files, seed, index)
    if variant is None:
        print("no variant")
        return 0
    print(f"{variant.path} {variant.class_name}: {variant.description}")
    if show:
        original = Path(variant.path).read_text(encoding="utf-8").splitlines(keepends=True)
        sys.stdout.writelines(difflib.unified_diff(original, variant.text.splitlines(keepends=True), n=2))
    outcome = fuzz.convert_variant(variant, twice=True)
    print(f"{outcome.status}: {outcome.detail}")
    if outcome.traceback:
        print(outcome.traceback)
    return 0


if __name__ == "__main__":
    sys.exit(main())
