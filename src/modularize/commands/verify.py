"""`modularize verify`: run the standard and the generated pipeline on the same inputs and compare outputs.

Per case, each pipeline gets its own deep copy of the same components (made before either is constructed, so a
constructor's side effects on its components cannot leak into the other), a fresh `torch.Generator("cpu")` with
the same seed, and one CPU thread. Plain mode runs both as they are; exact mode splits the standard pipeline's CFG
batches into half-batch calls and makes the generated one call the model once per guider batch, so any remaining
difference cannot be batching arithmetic.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EXIT_FAILED, EXIT_OK, InputError
from ..testing.equivalence import (
    Case,
    CaseResult,
    Equivalence,
    components_factory,
    load_package,
    package_classes,
    standard_class,
)
from .console import stderr

__all__ = [
    "Case",
    "CaseResult",
    "VerifyReport",
    "components_factory",
    "load_package",
    "package_classes",
    "parse_case",
    "standard_class",
    "verify_package",
]


@dataclass(frozen=True)
class VerifyReport:
    pipeline: str
    cases: tuple[CaseResult, ...]
    atol: float
    images: tuple[tuple[str, Any, Any], ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        compared = [c for c in self.cases if c.status != "skipped"]
        return bool(compared) and all(c.passed for c in compared)

    @property
    def problem(self) -> str:
        """Why the report is not ok, in one line ("" when it is): the first failed case, else the first
        difference, else that nothing was compared."""
        if self.ok:
            return ""
        for case in self.cases:
            if case.status == "failed":
                return f"{case.name} ({case.mode}): {case.reason}"[:300]
        for case in self.cases:
            if case.status == "compared" and not case.passed:
                text = f"{case.name} ({case.mode}): differs by {case.max_abs_diff:.3g}"
                text += f" ({case.reason})" if case.reason else ""
                text += f"; first diverging block: {case.first_diverging_block}" if case.first_diverging_block else ""
                return text[:300]
        reason = next((c.reason for c in self.cases if c.reason), "no cases")
        return f"nothing compared: every case was skipped ({reason})"[:300]

    def as_json(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, "ok": self.ok, "cases": [c.as_json() for c in self.cases]}


def verify_package(
    package_dir: str | Path,
    cases: Sequence[Case] | None = None,
    extra_cases: Sequence[Case] = (),
    exact: bool = False,
    components: Callable[[], dict[str, Any]] | None = None,
    seed: int = 0,
    atol: float = 1e-5,
    progress: Callable[[str], None] | None = None,
    workflow: str | None = None,
) -> VerifyReport:
    """Compare the generated package with its standard pipeline over the default matrix plus `extra_cases`. A
    family's package: each workflow (or `workflow` alone) with its own standard pipeline, its cases named
    `<workflow>: <case>`."""
    import torch
    from diffusers.utils import logging as diffusers_logging

    package_dir = Path(package_dir)
    threads = torch.get_num_threads()
    verbosity = diffusers_logging.get_verbosity()
    torch.set_num_threads(1)  # the thread count changes the last bits of CPU kernels
    # failures are reported per case; diffusers' own logging and deprecation warnings would only repeat them
    diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            workflows = [workflow] if workflow is not None else list(_workflows(package_dir)) or [None]
            reports = [
                _verify(package_dir, cases, extra_cases, exact, components, seed, atol, progress, name)
                for name in workflows
            ]
            return reports[0] if len(reports) == 1 else _joined(reports, workflows)
        finally:
            torch.set_num_threads(threads)
            diffusers_logging.set_verbosity(verbosity)


def _workflows(package_dir: Path) -> tuple[str, ...]:
    from ..testing.equivalence import workflows_of

    return workflows_of(package_classes(load_package(package_dir))[0])


def _joined(reports: list[VerifyReport], workflows: list[str]) -> VerifyReport:
    """One report of a family's workflows: each case named by its workflow."""
    from dataclasses import replace

    cases = tuple(
        replace(case, name=f"{name}: {case.name}")
        for name, report in zip(workflows, reports, strict=True)
        for case in report.cases
    )
    images = tuple(image for report in reports for image in report.images)
    pipelines = ", ".join(report.pipeline for report in reports)
    return VerifyReport(pipelines, cases, reports[0].atol, images)


def _verify(
    package_dir: Path, cases, extra_cases, exact, components, seed, atol, progress, workflow=None
) -> VerifyReport:
    equivalence = Equivalence(package_dir, components, seed, workflow)
    cases = [*(equivalence.matrix if cases is None else cases), *extra_cases] or [Case("default", {})]
    modes = ("plain", "exact") if exact else ("plain",)
    results, images = [], []
    for index, case in enumerate(cases):
        for mode in modes:
            result, shown = equivalence.run(case, mode, atol)
            results.append(result)
            if shown is not None:
                images.append(shown)
            if progress is not None:
                progress(_progress_line(index + 1, len(cases), result))
    return VerifyReport(equivalence.standard_cls.__name__, tuple(results), atol, tuple(images))


def _progress_line(index: int, total: int, result: CaseResult) -> str:
    if result.status == "skipped":
        verdict = f"skipped ({result.reason})"
    elif result.status == "failed":
        verdict = f"FAILED ({result.reason})"
    else:
        verdict = ("ok" if result.passed else "DIFFERENT") + (
            ", bitwise" if result.bitwise else f", max abs diff {result.max_abs_diff:.3g}"
        )
    return f"[{index}/{total}] {result.name} ({result.mode}): {verdict}"


def parse_case(text: str, index: int) -> Case:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            f"--case is not valid JSON: {error}", fix="pass a JSON object, e.g. '{\"guidance_scale\": 1.0}'"
        ) from None
    if not isinstance(value, dict):
        raise InputError("--case must be a JSON object of standard-call keyword arguments")
    name = str(value.pop("name", f"case_{index}"))
    return Case(name, value)


# -- the command -------------------------------------------------------------------------------------------------
def run_verify(package: Path, args, progress=True):
    extra = [parse_case(text, index + 1) for index, text in enumerate(args.case or [])]
    components = components_factory(args.components) if args.components else None
    return verify_package(
        package,
        cases=[] if args.no_default_cases else None,
        extra_cases=extra,
        exact=args.exact,
        components=components,
        seed=args.seed,
        atol=args.atol,
        progress=stderr if progress else None,
        workflow=getattr(args, "workflow", None),
    )


def _print_report(report, png: Path | None) -> None:
    compared = [c for c in report.cases if c.status != "skipped"]
    verdict = "OK" if report.ok else ("DIFFERENT" if compared else "NOTHING COMPARED (every case was skipped)")
    print(f"{report.pipeline}: {verdict} ({len(report.cases)} runs, atol {report.atol:g})")
    width = max((len(c.name) for c in report.cases), default=4)
    print(f"  {'case'.ljust(width)}  mode   max abs diff  bitwise  result")
    for case in report.cases:
        result = case.status if case.status != "compared" else ("pass" if case.passed else "FAIL")
        diff, bitwise = f"{case.max_abs_diff:12.3g}", "yes" if case.bitwise else "no"
        if case.status == "skipped":
            diff, bitwise = f"{'-':>12}", "-"
        print(
            f"  {case.name.ljust(width)}  {case.mode.ljust(5)}  {diff}  {bitwise:7}  {result}"
            + (f"  ({case.reason})" if case.reason else "")
            + (f"  first diverging block: {case.first_diverging_block}" if case.first_diverging_block else "")
        )
    if png is not None:
        print(f"standard | modular | difference: {png}")


def finish_verify(report, package: Path, args) -> int:
    from ..testing.report_image import save_comparison

    png = None
    if not args.no_png:
        target = Path(args.png) if args.png else Path(f"verify_{package.resolve().name}.png")
        png = save_comparison(report.images, target)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        _print_report(report, png)
    return EXIT_OK if report.ok else EXIT_FAILED


def command_verify(args) -> int:
    package = Path(args.package)
    report = run_verify(package, args)
    return finish_verify(report, package, args)
