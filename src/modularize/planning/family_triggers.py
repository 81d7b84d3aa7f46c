"""How a family's workflows are told apart: the trigger input that selects each, and the arguments a workflow
takes under a name of its own where two need the same one (`planning.family`).

diffusers' modular packages select a workflow by the inputs a call gives (`AutoPipelineBlocks`: the first block
whose trigger input is not None runs). A trigger must be given by every call meant for its workflow and by no call
meant for a workflow placed after it:

    ordered_with_triggers([base, img2img, inpaint])
    -> (inpaint: `mask_image`, img2img: `image`, base: default)
    ordered_with_triggers([base, img2img, controlnet])       # both need an `image` of their own
    -> (img2img: `image`, control_net: `control_net_image` (its standard `image`), base: default)

What a call need not give is read from the workflow's code (`handled_when_missing`): an argument tested for being
given (`prompt_2 = prompt_2 or prompt`, `if x is not None:`), in its blocks, in a helper it is handed to, or in
when it guides; one refused whenever given (not served); one computed from another argument when that one is given.
Only tests that refuse the call when it is missing (`if image is None: raise`) leave it a trigger.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import libcst as cst
import libcst.matchers as m

from ..cst.match_filter import matches
from ..cst.tree_walk import findall, names_in, walk
from ..errors import ConversionError
from .family_modules import nodes_of
from .family_rename import names_taken, renamable, with_renamed_argument
from .family_sharing import Workflow, helpers_of
from .plan import BlockPlan, LoopPlan, LoopStepPlan, Param, PipelinePlan


def ordered_with_triggers(workflows: list[Workflow], default_name: str) -> tuple[Workflow, ...]:
    """The default first: the workflow named like the family (`StableDiffusionPipeline` of `StableDiffusion`), or
    else the first given. Then the others placed one at a time: the first (in the given order) with a trigger that
    none of the workflows still to place takes goes next. Where none has one because two of them need an argument
    of the same name, the later given takes it under a name of its own (`_renamed_for_a_trigger`)."""
    default = next((w for w in workflows if w.name == default_name), workflows[0])
    remaining, placed = [*(w for w in workflows if w is not default), default], []

    def others(workflow: Workflow) -> set[str]:
        return set().union(*({p.name for p in o.plan.call_arguments} for o in remaining if o is not workflow))

    while len(remaining) > 1:
        for workflow in remaining[:-1]:
            trigger = _trigger(workflow, others(workflow))
            if trigger is not None:
                placed.append(dataclasses.replace(workflow, trigger=trigger))
                remaining.remove(workflow)
                break
        else:
            renamed = _renamed_for_a_trigger(remaining, [*placed, *remaining])
            if renamed is not None:
                remaining = [renamed if w.name == renamed.name else w for w in remaining]
                continue
            optional = [
                f"`{w.plan.class_name}` handles {_listed(names)} missing"
                for w in remaining[:-1]
                if (names := _candidates(w, others(w)))
            ]
            raise refusal(
                remaining[0].plan,
                f"no call can select one of {_listed(w.plan.class_name for w in remaining)} by its inputs: each takes "
                "every argument defaulting to None that another of them takes"
                + (f", but for ones its calls may leave out ({'; '.join(optional)})" if optional else ""),
            )
    return (*placed, remaining[0])


def _renamed_for_a_trigger(remaining: list[Workflow], every: list[Workflow]) -> Workflow | None:
    """The last given of the workflows still to place (the default aside) that needs an argument another of them
    takes too, with that argument renamed `<workflow>_<argument>`; None when there is none to rename.

        img2img: image (init image), controlnet: image (control image), base: no image
        -> controlnet with `controlnet_image`: then `image` selects img2img, `controlnet_image` ControlNet

    An argument the default workflow takes is not renamed: a call meant for the default gives it too. Neither is
    one the workflow can do without (`handled_when_missing`), nor one the guider reads by its name."""
    *choices, default = remaining
    defaults = {p.name for p in default.plan.call_arguments}
    taken = set().union(*(names_taken(w.plan) for w in every))
    for workflow in reversed(choices):
        shared = set().union(*({p.name for p in o.plan.call_arguments} for o in choices if o is not workflow))
        for param in workflow.plan.call_arguments:
            name, new = param.name, f"{workflow.name}_{param.name}"
            if (
                name in shared
                and name not in defaults
                and _may_select(workflow.plan, param)
                and new not in taken
                and renamable(workflow.plan, name)
                and not handled_when_missing(workflow.plan, name)
            ):
                plan = with_renamed_argument(workflow.plan, name, new)
                return dataclasses.replace(workflow, plan=plan, renamed=(*workflow.renamed, (name, new)))
    return None


def _trigger(workflow: Workflow, others: set[str]) -> str | None:
    """The first argument of the workflow's own that defaults to None (or to nothing) and that its code does not
    handle being None: given by a call that uses what the workflow is for, never by a call meant for the others.

        image=None; ...; image = self.image_processor.preprocess(image)         -> a trigger
        denoising_start=None; ...; add_noise = True if denoising_start is None   -> not: a call may leave it out
    """
    plan = workflow.plan
    return next((name for name in _candidates(workflow, others) if not handled_when_missing(plan, name)), None)


def _candidates(workflow: Workflow, others: set[str]) -> list[str]:
    """The workflow's own arguments (none of `others`) that its blocks take and that default to None or to nothing,
    in signature order: an argument the blocks do not take (a deprecated `callback` the package drops) reaches
    no block, so no block could be selected by it."""
    return [p.name for p in workflow.plan.call_arguments if p.name not in others and _may_select(workflow.plan, p)]


def _may_select(plan: PipelinePlan, param: Param) -> bool:
    """An argument the blocks take that defaults to None (or to nothing): a call that leaves it out gives None."""
    return param.name in plan.block_arguments and param.default in (None, "None") and not param.name.startswith("_")


def handled_when_missing(plan: PipelinePlan, name: str) -> bool:
    """Whether the workflow's code runs without `name`: tests it other than to refuse the call (`if x is None:
    raise`), in its blocks or in when it guides (`do_true_cfg = true_cfg_scale > 1 and negative_prompt is not
    None`, now the guider's). Then a call meant for it may leave it out.

        if denoising_start is None: ...      prompt_2 = prompt_2 or prompt      x if image else y      -> handled
        if image is None: raise ValueError(...)                                                       -> not
    """
    if plan.guidance.condition and _missing_tests(cst.parse_expression(plan.guidance.condition), name):
        return True
    if any(_replaced(part, name) for part in plan.block_parts):
        return True
    # what a call can hand the argument to: the plan's helpers (`self.encode_prompt(...)`) and the module's
    # functions (`retrieve_timesteps(..., timesteps, sigmas)`, which does without custom timesteps)
    callees = {f"self.{helper.name}": helper.function for helper in helpers_of(plan)}
    for definition in plan.module_definitions:
        if isinstance(definition.node, cst.FunctionDef):
            callees.setdefault(definition.node.name.value, definition.node)
    return _handled_in(list(nodes_of(plan.blocks)), name, callees)


def _replaced(block: BlockPlan | LoopPlan | LoopStepPlan, name: str) -> bool:
    """Whether a block taking `name` from the call computes it from another argument when that one is given:
    then a call may give the other instead (`if last_image is not None: last_image_latents = encode(last_image)`).
    `image = preprocess(image)` uses what the call gave."""
    if not any(p.name == name and p.producer is None for p in block.inputs):
        return False
    statements = block.wrapper_body if isinstance(block, LoopPlan) else block.body
    for statement in statements:
        for branch in findall(statement, m.If()):
            given = [term for term in _operands(branch.test) if matches(term, _GIVEN_ANY)]
            if not any(_given_name(term) != name for term in given):
                continue
            for assign in findall(branch.body, m.Assign()):
                targets = {n.value for target in assign.targets for n in walk(target.target) if type(n) is cst.Name}
                if name in targets and name not in names_in(assign.value):
                    return True
    return False


def _given_name(test: cst.BaseExpression) -> str:
    """The argument a given-test (`x is not None`, `x`) tests."""
    return test.left.value if isinstance(test, cst.Comparison) else test.value


def _handled_in(roots: list[cst.CSTNode], name: str, callees: dict[str, cst.FunctionDef] | None = None) -> bool:
    """`handled_when_missing` over `roots`; with `callees`, also where a call hands `name` to a function that
    handles its parameter missing (`self.encode_prompt(components, prompt_2=negative_prompt_2)`, whose
    `prompt_2 = prompt_2 or prompt` does without it)."""
    tests = refusing = 0
    for root in roots:
        tests += len(_missing_tests(root, name))
        for branch in findall(root, m.If()):
            if all(matches(s, m.SimpleStatementLine(body=[m.Raise()])) for s in branch.body.body):
                if any(matches(term, _given(name)) for term in _operands(branch.test, (cst.Or,))):
                    return True  # refused whenever given (`if x is not None or ...: raise`, not served here)
                refusing += len(_missing_tests(branch.test, name))  # `if x is None: raise`: required
        for function, parameter in _handed_to(root, name, callees or {}):
            if _handled_in([function.body], parameter):
                return True
    return tests > refusing


def _handed_to(root: cst.CSTNode, name: str, callees: dict[str, cst.FunctionDef]) -> list[tuple[cst.FunctionDef, str]]:
    """(function, its parameter) for each call below `root` of one of `callees` (by how a call spells it:
    `self.<helper>`, a module function's name) that passes `name` as that parameter, by keyword or by position."""
    found = []
    for call in findall(root, m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name()) | m.Name())):
        spelled = f"self.{call.func.attr.value}" if isinstance(call.func, cst.Attribute) else call.func.value
        function = callees.get(spelled)
        if function is None:
            continue
        parameters = [p.name.value for p in (*function.params.posonly_params, *function.params.params)]
        for position, argument in enumerate(call.args):
            if not matches(argument.value, m.Name(name)) or argument.star:
                continue
            if argument.keyword is not None:
                found.append((function, argument.keyword.value))
            elif position < len(parameters):
                found.append((function, parameters[position]))
    return found


def _given(name: str | m.MatchIfTrue) -> m.BaseMatcherNode:
    """`x is not None`, `x != None`, `x`: true when the argument was given."""
    named = m.Name(name)
    return m.Comparison(named, [m.ComparisonTarget(m.IsNot() | m.NotEqual(), m.Name("None"))]) | named


_GIVEN_ANY = _given(m.MatchIfTrue(str.isidentifier))  # a given-test of any argument


def _missing_tests(root: cst.CSTNode, name: str) -> list[cst.CSTNode]:
    """The places below `root` that ask whether `name` was given: compared with None, or taken for its truth
    (`x or default`, `not x`, `if x:`, `y if x else z`, `x and y` as a test)."""
    named = m.Name(name)
    compared = m.Comparison(named, [m.ComparisonTarget(m.Is() | m.IsNot() | m.Equal() | m.NotEqual(), m.Name("None"))])
    # (`x or default` tests `x`; `default or x` only falls back to it)
    truth = m.BooleanOperation(left=named) | m.UnaryOperation(m.Not(), named)
    found = findall(root, compared | truth)
    for branch in findall(root, m.If() | m.While() | m.IfExp()):
        found += [term for term in _operands(branch.test) if matches(term, named)]
    return found


def _operands(test: cst.BaseExpression, operators: tuple[type, ...] = (cst.And, cst.Or)) -> list[cst.BaseExpression]:
    """`a and (b or c)` -> [a, b, c]: what a test takes the truth of; with `(cst.Or,)`, `a or b or c` -> [a, b, c],
    each enough for the test to hold."""
    if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, operators):
        return [*_operands(test.left, operators), *_operands(test.right, operators)]
    return [test]


def _listed(names: Iterable[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def refusal(plan: PipelinePlan, message: str) -> ConversionError:
    return ConversionError(
        message, plan.class_location, fix="convert these pipelines one by one, or leave this one out of the family"
    )
