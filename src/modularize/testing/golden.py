"""Golden cases: small input pipelines and every file the converter generates for them (LibCST codemod style).

    tests/cases/<pattern>/<name>/input.py                a small pipeline written for the case
    tests/cases/<pattern>/<name>/expected/<relpath>      each generated file, byte for byte (header included)
    tests/cases/<pattern>/<name>/expected/refusal.txt    instead, when the converter refuses the input: its one line
    tests/cases/<pattern>/<name>/verify.json             optional: the calls that prove the conversion, as a JSON
                                                         list of `{"name": ..., <standard-call keyword arguments>}`

`tests/test_golden.py` regenerates every case in memory with the pure `convert` and fails with a unified diff
where the bytes differ. After a deliberate change to what the converter generates (or to its formatter), rewrite
the expected files and review the diff like any other change:

    python -m modularize.testing.golden --update     # rewrite every case's expected/ (stale files removed)
    python -m modularize.testing.golden              # print the diffs, exit 1 when any case differs

Each case converts as `modularize tests/cases/<pattern>/<name>/input.py` run from the repository root would: the
source label recorded in headers is that repository-relative path. Only the converter runs (no torch, no diffusers).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..convert import ConvertOptions, convert
from ..errors import ModularizeError
from ..frontend.source_file import SourceFile

INPUT = "input.py"
EXPECTED = "expected"
REFUSAL = "refusal.txt"
VERIFY = "verify.json"
LABEL_ROOT = "tests/cases"  # where the cases live in the repository, as headers record it
DEFAULT_ROOT = Path(LABEL_ROOT)


@dataclass(frozen=True)
class Case:
    root: Path  # the directory holding every case (`tests/cases`)
    directory: Path  # `tests/cases/<pattern>/<name>`

    @property
    def name(self) -> str:
        """`<pattern>/<name>`."""
        return self.directory.relative_to(self.root).as_posix()

    @property
    def pattern(self) -> str:
        return self.directory.relative_to(self.root).parts[0]

    @property
    def label(self) -> str:
        return f"{LABEL_ROOT}/{self.name}/{INPUT}"

    @property
    def expected_directory(self) -> Path:
        return self.directory / EXPECTED

    def __str__(self) -> str:
        return self.name


def find_cases(root: Path = DEFAULT_ROOT) -> list[Case]:
    """Every directory under `root` holding an `input.py`, in path order."""
    return [Case(root, path.parent) for path in sorted(root.glob(f"*/*/{INPUT}"))]


def plan(case: Case):
    """The case's plan, as `generate` converts it."""
    from ..convert import plan_for

    text = (case.directory / INPUT).read_bytes().decode("utf-8")
    options, read_module = _options(case)
    return plan_for(text, options, read_module)


def _options(case: Case):
    others = sorted(path for path in case.directory.glob("*.py") if path.name != INPUT)
    options = ConvertOptions(path=case.label, label=case.label, module_name="input" if others else None)
    return options, _module_reader(case) if others else None


def generate(case: Case) -> dict[str, str]:
    """What the converter makes of the case's input now: its files, or `{"refusal.txt": <the one-line error>}`.

    A case with other modules beside `input.py` (the pipelines a pipeline made of pipelines builds) converts as a
    module `input` of a package holding them: `from .draft import DraftPipeline` reads `draft.py`."""
    text = (case.directory / INPUT).read_bytes().decode("utf-8")
    options, read_module = _options(case)
    try:
        return convert(text, options, read_module)
    except ModularizeError as error:
        return {REFUSAL: f"{error}\n"}


def _module_reader(case: Case):
    def read(module_name: str) -> SourceFile | None:
        path = case.directory / f"{module_name}.py"
        if "." in module_name or not path.is_file():
            return None
        label = f"{LABEL_ROOT}/{case.name}/{path.name}"
        return SourceFile(Path(label), path.read_bytes().decode("utf-8"), label, module_name)

    return read


def verify_calls(case: Case) -> list[tuple[str, dict]]:
    """The case's own verification calls (`verify.json`): (name, standard-call keyword arguments), or none."""
    path = case.directory / VERIFY
    if not path.is_file():
        return []
    calls = json.loads(path.read_text())
    return [(call.pop("name"), call) for call in calls]


def expected(case: Case) -> dict[str, str]:
    """The case's expected files, by path relative to `expected/`."""
    directory = case.expected_directory
    if not directory.is_dir():
        return {}
    return {
        path.relative_to(directory).as_posix(): path.read_bytes().decode("utf-8")
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def differences(case: Case, generated: dict[str, str] | None = None) -> str:
    """Unified diffs from the expected files to the generated ones (missing and extra files included); "" if equal."""
    generated = generate(case) if generated is None else generated
    wanted = expected(case)
    diffs = []
    for name in sorted(set(wanted) | set(generated)):
        before, after = wanted.get(name), generated.get(name)
        if before == after:
            continue
        diffs.append(
            "".join(
                difflib.unified_diff(
                    (before or "").splitlines(keepends=True),
                    (after or "").splitlines(keepends=True),
                    fromfile=f"{case.name}/{EXPECTED}/{name}" if before is not None else "/dev/null",
                    tofile=f"{case.name}/generated/{name}" if after is not None else "/dev/null",
                )
            )
        )
    return "\n".join(diffs)


def update(case: Case) -> bool:
    """Rewrite the case's expected files with what the converter generates now; True when anything changed."""
    generated = generate(case)
    if not differences(case, generated):
        return False
    directory = case.expected_directory
    for name in expected(case):
        if name not in generated:
            (directory / name).unlink()
    for name, text in generated.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    for path in sorted(directory.rglob("*"), reverse=True):  # directories emptied by removed files
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modularize.testing.golden",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--update", action="store_true", help="rewrite the expected files of every case")
    parser.add_argument("--cases", type=Path, default=DEFAULT_ROOT, help="directory of the cases (tests/cases)")
    parser.add_argument("names", nargs="*", help="only these cases (`<pattern>/<name>`)")
    args = parser.parse_args(argv)
    cases = find_cases(args.cases)
    if args.names:
        cases = [case for case in cases if case.name in args.names]
    if not cases:
        print(f"no golden cases under {args.cases}", file=sys.stderr)
        return 2
    differing = 0
    for case in cases:
        if args.update:
            if update(case):
                print(f"updated {case.name}")
                differing += 1
        else:
            diff = differences(case)
            if diff:
                print(diff)
                differing += 1
    verb = "updated" if args.update else "differ"
    print(f"{len(cases)} golden cases, {differing} {verb}", file=sys.stderr)
    return 1 if differing and not args.update else 0


if __name__ == "__main__":
    sys.exit(main())
