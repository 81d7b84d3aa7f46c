"""Lines of a family's package against its workflows' own packages, for the installed diffusers' families.

    .venv/bin/python benchmarks/family_lines.py [--family sd ...]

For each family it converts the workflows one by one and together (in process, nothing written) and prints the
lines of the block modules (`encoders.py`, `before_denoise.py`, `denoise.py`, `decoders.py`, and a family's
`helpers.py`, the helpers its blocks share) and of every module:
the family's package, the largest single-workflow package, their ratio (the family issue's target is <= 1.3 for
the block modules) and the sum of the single packages (what keeping one package per pipeline costs).

Then, in the plan's own measure (source lines of block statements and helpers, `FamilyPlan.lines_written`), how far
splitting blocks could go: each distinct statement of a block at its key written once, as if every block were
split where its workflows part, with the helpers as the family groups them (a helper differing in one line is
another helper: the issue rules out merging differing code). Not a layout anyone would write (a block per run of
shared statements, each with its declarations): the fewest lines any split of blocks alone could reach.
"""

from __future__ import annotations

import argparse

from modularize.convert import ConvertOptions, convert, convert_family, family_plan_for
from modularize.emit.family import HELPERS_FILE
from modularize.emit.layout import LEAF_FILES
from modularize.frontend.parse import code
from modularize.frontend.source_file import installed_diffusers_file, module_reader, read_source
from modularize.planning.family_sharing import code_fingerprint, own_class_names
from modularize.planning.plan import LoopPlan

FAMILIES = {
    "sd": ("stable_diffusion/pipeline_stable_diffusion", "_img2img", "_inpaint"),
    "sdxl": ("stable_diffusion_xl/pipeline_stable_diffusion_xl", "_img2img", "_inpaint"),
    "sd3": ("stable_diffusion_3/pipeline_stable_diffusion_3", "_img2img", "_inpaint"),
    "flux": ("flux/pipeline_flux", "_img2img", "_inpaint"),
    "qwenimage": ("qwenimage/pipeline_qwenimage", "_img2img", "_inpaint"),
}


def sources_of(family: str) -> list[tuple[str, ConvertOptions]]:
    base, *variants = FAMILIES[family]
    found = []
    for suffix in ("", *variants):
        path = installed_diffusers_file(f"pipelines/{base}{suffix}.py")
        source = read_source(str(path))
        found.append((source.text, ConvertOptions(str(path), source.label, source.module_name)))
    return found


def lines(files: dict[str, str], names=None) -> int:
    return sum(text.count("\n") for name, text in files.items() if names is None or name in names)


def statement_level_bound(family) -> tuple[int, int, int]:
    """(source lines the family's plan writes, the largest workflow's alone, the fewest any split of blocks could
    write): each distinct statement of a block (at its key) once, as if every block were split where its workflows
    part, and the helpers as the family groups them, since a helper that differs in one line is another helper."""
    written, largest = family.lines_written()
    seen: set[tuple[str, str]] = set()
    bodies = 0
    for workflow in family.workflows:
        own = own_class_names(workflow.plan)
        for block in workflow.plan.blocks:
            parts = [(block.key, getattr(block, "body", ()))]
            if isinstance(block, LoopPlan):
                parts = [(block.key, block.wrapper_body), *((f"{block.key}.{s.key}", s.body) for s in block.steps)]
            for key, statements in parts:
                for statement in statements:
                    found = (key, code_fingerprint(statement, own))
                    if found not in seen:
                        seen.add(found)
                        bodies += len(code(statement).strip().splitlines())
    return written, largest, bodies + sum(sum(helper.lines) for helper in family.helpers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", action="append", choices=sorted(FAMILIES))
    args = parser.parse_args()
    print(f"{'family':10} {'':6} {'family':>7} {'largest':>8} {'ratio':>6} {'sum':>7}")
    bounds = []
    for family in args.family or FAMILIES:
        sources = sources_of(family)
        reader = module_reader(installed_diffusers_file(f"pipelines/{FAMILIES[family][0]}.py"))
        singles = [convert(text, options, reader) for text, options in sources]
        merged = convert_family(sources, reader)
        for label, names in (("blocks", (*LEAF_FILES, HELPERS_FILE)), ("all", None)):
            each = [lines(files, names) for files in singles]
            ours = lines(merged, names)
            print(f"{family:10} {label:6} {ours:7} {max(each):8} {ours / max(each):6.2f} {sum(each):7}")
        bounds.append((family, *statement_level_bound(family_plan_for(sources, reader))))
    print("\nsource lines of block statements and helpers (the plan's measure): the family's, the largest workflow's,")
    print("and the fewest if every block were split where its workflows part (helpers as grouped: no merging)")
    print(f"{'family':10} {'family':>7} {'largest':>8} {'ratio':>6} {'split':>7} {'ratio':>6}")
    for family, written, largest, bound in bounds:
        print(f"{family:10} {written:7} {largest:8} {written / largest:6.2f} {bound:7} {bound / largest:6.2f}")


if __name__ == "__main__":
    main()
