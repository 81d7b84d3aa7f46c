"""What `modularize plan A.py B.py ...` prints of a family: its workflows and triggers, how each block (each part
of a denoising loop) and helper is shared, the class each is written as, and where the others first differ.
"""

from __future__ import annotations

from .family import FamilyPlan
from .family_sharing import WRAPPER, FamilyBlock, FamilyHelper
from .family_views import workflow_in_family


def family_summary(family: FamilyPlan) -> dict:
    """What `modularize plan A B ... --json` prints: the workflows, how each block and helper is shared, and the
    lines the family carries against its largest workflow alone."""
    carried, largest = family.lines_written()
    views = {w.name: workflow_in_family(family, w) for w in family.workflows}

    def class_of(key: str, part: str | None, workflow: str) -> str:
        (block,) = [b for b in views[workflow].blocks if b.key == key]
        if part is None:
            return block.class_name
        if part == WRAPPER:
            return block.wrapper_class_name
        return next(step.class_name for step in block.steps if step.key == part)

    def grouped(item: FamilyBlock | FamilyHelper, key: str | None = None) -> dict:
        classes = {}
        if isinstance(item, FamilyBlock):
            block_key, part = (key, item.key) if key is not None else (item.key, None)
            classes = {"classes": {", ".join(group): class_of(block_key, part, group[0]) for group in item.groups}}
        return {
            "name": getattr(item, "key", None) or item.name,
            **classes,
            "shared": [list(g) for g in item.groups if len(g) > 1],
            "own": [g[0] for g in item.groups if len(g) == 1],
            "lines": list(item.lines),
            "differences": [
                {
                    "workflows": list(group),
                    "from": item.groups[0][0],
                    "where": difference.where,
                    "lines": [difference.first, difference.other] if difference.first is not None else [],
                }
                for group, difference in zip(item.groups[1:], item.differences, strict=True)
            ],
            **({"parts": [grouped(part, item.key) for part in item.parts]} if getattr(item, "parts", ()) else {}),
        }

    return {
        "prefix": family.prefix,
        "workflows": [
            {
                "name": w.name,
                "pipeline": w.plan.class_name,
                "source": w.plan.source_label,
                "trigger": w.trigger,
                **({"renamed": dict(w.renamed)} if w.renamed else {}),
            }
            for w in family.workflows
        ],
        "blocks": [grouped(b) for b in family.blocks],
        "helpers": [grouped(h) for h in family.helpers],
        "lines": {"family": carried, "largest_workflow": largest, "ratio": round(carried / max(largest, 1), 2)},
    }


def _classes(item: dict) -> str:
    """`StableDiffusionEncodeInputPromptStep` (one class), or each with its workflows."""
    classes = item["classes"]
    if len(classes) == 1:
        return next(iter(classes.values()))
    return ", ".join(f"{name} ({workflows})" for workflows, name in classes.items())


def _sharing(item: dict) -> str:
    groups = [*item["shared"], *([name] for name in item["own"])]
    if len(groups) == 1 and len(groups[0]) == 1:
        return f"only in {groups[0][0]}"
    parts = [f"shared by {', '.join(g)}" for g in item["shared"]]
    if item["own"]:
        parts.append(f"its own in {', '.join(item['own'])}")
    return "; ".join(parts)


def render_family_plan(family: FamilyPlan) -> str:
    summary = family_summary(family)
    lines = [
        f"family {family.prefix}: {len(family.workflows)} workflows",
        "",
        "workflows (the first whose trigger is given runs):",
    ]
    for w in summary["workflows"]:
        trigger = f"when `{w['trigger']}` is given" if w["trigger"] else "default"
        lines.append(f"  {w['name']}: {w['pipeline']} ({w['source']}), {trigger}")
        for standard, name in w.get("renamed", {}).items():
            lines.append(f"      takes `{standard}` as `{name}`: another workflow needs an `{standard}` of its own")

    for title, items in (("blocks", summary["blocks"]), ("helpers", summary["helpers"])):
        lines += ["", f"{title} (compared as Python: comments, layout and names of generated classes aside):"]
        for item in items:
            lines.append(f"  {item['name']}: {_sharing(item)}")
            if "classes" in item:
                lines.append(f"      as {_classes(item)}")
            for part in item.get("parts", ()):
                lines.append(f"    - {part['name']}: {_sharing(part)}; as {_classes(part)}")
            for difference in item["differences"]:
                others = difference["workflows"]
                verb = "differs" if len(others) == 1 else "differ"
                lines.append(f"      {', '.join(others)} {verb} from {difference['from']} at {difference['where']}")
                if difference["lines"]:
                    first, other = difference["lines"]
                    lines.append(f"          {difference['from']}: {first}")
                    lines.append(f"          {others[0]}: {other}")
    counts = summary["lines"]
    lines += [
        "",
        f"source lines of blocks and helpers, each distinct one once: {counts['family']}, against "
        f"{counts['largest_workflow']} for the largest workflow alone (x{counts['ratio']})",
    ]
    return "\n".join(lines) + "\n"
