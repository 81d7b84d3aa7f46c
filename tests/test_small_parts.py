"""Docstring descriptions, names, headers and stage labels."""

import libcst as cst
import pytest

from modularize.analysis.segment import kind_of_label, label_title, segment_call, stage_label
from modularize.emit.header import edited_by_hand, read_header, sha256, with_header
from modularize.frontend.docstrings import parameter_descriptions
from modularize.frontend.parse import parse_source
from modularize.planning.naming import Naming, block_key, words_of

DOCSTRING = """
    Function invoked when calling the pipeline.

    Args:
        prompt (`str` or `list[str]`, *optional*):
            The prompt or prompts to guide image generation. If not defined, you need to pass `prompt_embeds`.
        ip_adapter_image: (`PipelineImageInput`, *optional*): Optional image input to work with IP Adapters.
        output_type (`str`, *optional*, defaults to `"pil"`):
            The output format.

    Examples:
        prompt (`str`): not a parameter
"""


def test_parameter_descriptions_join_continuation_lines_and_stop_at_the_next_section():
    descriptions = parameter_descriptions(DOCSTRING)
    assert descriptions["prompt"].startswith("The prompt or prompts to guide image generation. If not defined")
    assert descriptions["ip_adapter_image"] == "Optional image input to work with IP Adapters."
    assert descriptions["output_type"] == "The output format."
    assert set(descriptions) == {"prompt", "ip_adapter_image", "output_type"}


def test_names_come_from_the_pipeline_class():
    naming = Naming.of_pipeline("StableDiffusionXLPipeline")
    assert (naming.prefix, naming.model_name, naming.package) == (
        "StableDiffusionXL",
        "modularize-stable-diffusion-xl",
        "modular_stable_diffusion_xl",
    )
    assert naming.pipeline_class == "StableDiffusionXLGeneratedModularPipeline"
    assert words_of("PixArtSigma") == ["pix", "art", "sigma"]
    assert block_key("Prepare extra step kwargs") == "prepare_extra_step_kwargs"
    assert naming.block_class("prepare_timesteps") == "StableDiffusionXLPrepareTimestepsStep"


def test_stage_labels_are_matched_by_label_not_number():
    def second(text: str):
        return cst.parse_module("y = 0\n" + text).body[1]  # comments above the first line belong to the module

    assert stage_label(second("# to deal with lora scaling\n# 7. Denoising loop\nx = 1\n")) == "7. Denoising loop"
    assert stage_label(second("# 6.1 Add image embeds\nx = 1\n")) == "6.1 Add image embeds"
    assert stage_label(second("# expand the latents\nx = 1\n")) is None
    assert label_title("6. Prepare extra step kwargs. TODO: Logic should move") == "Prepare extra step kwargs"
    assert kind_of_label("9. Denoising loop") == "denoise"
    assert kind_of_label("3. Encode input prompt") == "encode"
    assert kind_of_label("1. Check inputs. Raise error if not correct") == "input"
    assert kind_of_label("4. Prepare timesteps") == "before_denoise"
    assert stage_label(second("# 4.Prepare timesteps\nx = 1\n")) == "4. Prepare timesteps"
    assert label_title("Encode input prompt") == "Encode input prompt"


CALL = """
class P:
    def __call__(self, prompt):
        # 2. Define call parameters
        batch_size = 1
        device = self._execution_device
        prompt_embeds = self.encode_prompt(prompt, device)
        if negative:
            negative_prompt_embeds = self.encode_prompt(negative, device)
        # 4. Prepare latents
        latents = self.prepare_latents(batch_size)
        for i, t in enumerate(timesteps):
            latents = step(latents)
"""


def test_a_stage_that_also_encodes_the_prompt_gives_an_encode_block():
    source = parse_source(CALL, "p.py")
    body = source.tree.body[0].body.body[0].body.body
    segments = segment_call(source, body)
    assert [(s.label, s.kind, len(s.statements)) for s in segments] == [
        ("2. Define call parameters", "input", 2),
        ("Encode input prompt", "encode", 2),
        ("4. Prepare latents", "before_denoise", 1),
        ("Denoising loop", "denoise", 1),
    ]
    unlabelled = parse_source(
        CALL.replace("# 2. Define call parameters", "").replace("# 4. Prepare latents", ""), "p.py"
    )
    segments = segment_call(unlabelled, unlabelled.tree.body[0].body.body[0].body.body)
    assert [(s.kind, len(s.statements)) for s in segments] == [
        ("input", 2),
        ("encode", 2),
        ("before_denoise", 1),
        ("denoise", 1),
    ]


def test_headers_tell_a_hand_edit_from_a_generated_file():
    text = with_header("x = 1\n", "pkg/pipeline_a.py", "APipeline", "source text", "modularize test")
    header, body = read_header(text)
    assert body == "x = 1\n"
    assert header.source == "pkg/pipeline_a.py" and header.source_sha256 == sha256("source text")
    assert not edited_by_hand(text)
    assert edited_by_hand(text.replace("x = 1", "x = 2"))
    assert read_header("x = 1\n") is None


def test_tree_walk_findall_finds_what_libcst_finds_in_the_same_order(sd_source):
    import libcst.matchers as m

    from modularize.cst.tree_walk import children, findall, remembered_children, walk

    tree = cst.parse_module(sd_source.read_text())
    significant = (cst.BaseExpression, cst.BaseStatement, cst.BaseSmallStatement, cst.Arg, cst.Param, cst.Decorator)
    for node in walk(tree):  # the same significant children as LibCST's, in the same order
        expected = [id(child) for child in node.children if isinstance(child, significant)]
        assert [id(child) for child in children(node) if isinstance(child, significant)] == expected
    matchers = [
        m.Assign(targets=[m.AssignTarget(m.Attribute(value=m.Name("self")))]),
        m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name())),
        m.Name("latents") | m.Attribute(attr=m.Name("latents")),  # not a node matcher: every node is tested
        m.For(),
        m.IfExp(),  # its fields are not in source order (`body if test else orelse`)
        m.Arg(keyword=m.Name()),
        m.SimpleString(value=m.MatchIfTrue(lambda text: "guidance" in text)),
    ]
    for matcher in [*matchers, m.If() | m.IfExp() | m.For()]:
        expected = m.findall(tree, matcher)
        found = findall(tree, matcher)
        assert expected and len(found) == len(expected)
        assert all(a is b for a, b in zip(found, expected, strict=True))
        with remembered_children():  # from the nodes listed by class below each searched node: the same
            for node in (tree, findall(tree, m.FunctionDef(name=m.Name("__call__")))[0]):
                for _ in range(2):
                    assert [id(n) for n in findall(node, matcher)] == [id(n) for n in m.findall(node, matcher)]
    # `skip` leaves out a node and everything below it
    loop = findall(tree, m.For())[0]
    assert not any(node is loop for node in walk(tree, skip=lambda node: node is loop))
    assert not any(node is loop.body for node in walk(tree, skip=lambda node: node is loop))


def test_matches_answers_as_libcst_for_every_node_and_asks_libcst_only_where_its_condition_is_not_the_match(
    sd_source, monkeypatch
):
    import libcst.matchers as m

    from modularize.cst import match_filter
    from modularize.cst.tree_walk import walk

    nodes = list(walk(cst.parse_module(sd_source.read_text())))
    exact = [
        m.Name("self"),
        m.Attribute(value=m.Name("self"), attr=m.Name("vae")),
        m.Call(func=m.Attribute(value=m.Name("self"))),
        m.Name("latents") | m.Attribute(attr=m.Name("latents")),
        m.Comparison(m.Name(), [m.ComparisonTarget(m.Is() | m.IsNot(), m.Name("None"))]),  # a sequence: not exact
        m.Param(default=None),
        m.Integer("0") | m.Integer("1"),
        m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])]),  # sequences of node matchers
        m.Call(args=[m.DoNotCare(), m.Arg(keyword=None)]),
        m.Call(args=[]),
        m.SimpleStatementLine(body=[m.Expr(m.Call()) | m.Return()]),
    ]
    inexact = [
        m.Arg(keyword=m.Name(m.MatchIfTrue(lambda name: name.startswith("prompt")))),
        m.Call(args=[m.ZeroOrMore(), m.Arg(keyword=m.Name("generator")), m.ZeroOrMore()]),
        m.Call(args=[m.Arg(), m.SaveMatchedNode(m.Arg(), "second")]),
        m.ImportFrom(names=[m.ImportAlias(m.MatchIfTrue(lambda name: True))]),
        m.Subscript(value=m.Name("list"), slice=[m.DoNotCare()]),
        m.Call(func=m.DoesNotMatch(m.Name("print"))),
        m.Assign(targets=[m.AssignTarget(m.SaveMatchedNode(m.Name(), "target"))]),
        m.AllOf(m.Name(), m.Name("device")),
        m.MatchIfTrue(lambda node: True),  # LibCST matches nothing with it at the top
        m.OneOf(m.Name("x"), m.MatchIfTrue(lambda node: True)),
    ]
    for matcher in [*exact, *inexact]:
        expected = [m.matches(node, matcher) for node in nodes]
        assert any(expected) or matcher in inexact[-2:], matcher
        assert [match_filter.matches(node, matcher) for node in nodes] == expected, matcher
    # a matcher the condition is the whole of never reaches LibCST
    monkeypatch.setattr(m, "matches", lambda node, matcher: pytest.fail("asked LibCST"))
    for matcher in exact[:4] + exact[5:]:
        assert match_filter.necessary_condition(matcher)[1], matcher
        assert [match_filter.matches(node, matcher) for node in nodes].count(True) > 0


def test_walks_searches_and_paths_from_one_listing_of_the_tree_are_those_of_walking_it(sd_source):
    """Within `remembered_children`, walks, searches and paths below a node are slices of one listing of a tree
    holding it (a subtree listed first, the whole tree later): the same nodes, in the same order, as walking."""
    import libcst.matchers as m

    from modularize.cst.tree_walk import findall, paths_to, paths_to_nodes, remember_tree, remembered_children, walk

    tree = cst.parse_module(sd_source.read_text())
    call = findall(tree, m.FunctionDef(name=m.Name("__call__")))[0]
    statements = list(call.body.body)
    targets = findall(call, m.Call(func=m.Attribute(attr=m.Name("to"))))[::2]
    skip = lambda node: isinstance(node, (cst.Call, cst.Lambda))  # noqa: E731
    is_self = lambda node: isinstance(node, cst.Name) and node.value == "self"  # noqa: E731
    nodes = list(walk(tree))
    expected = {
        "walks": [[id(n) for n in walk(node)] for node in nodes[::97]],
        "skipping": [[id(n) for n in walk(s, skip=skip)] for s in statements],
        "calls": [[id(n) for n in findall(s, m.Call() | m.Name("latents"))] for s in statements],
        "paths": paths_to(statements, is_self),
        "paths by class": paths_to(statements, is_self),
        "paths to nodes": paths_to(statements, lambda node: any(node is target for target in targets)),
    }
    for whole_first in (False, True):
        with remembered_children():
            if whole_first:
                remember_tree(tree)
            else:
                walk(statements[3])  # a subtree listed on its own, then the module around it
            remember_tree(tree)
            found = {
                "walks": [[id(n) for n in walk(node)] for node in nodes[::97]],
                "skipping": [[id(n) for n in walk(s, skip=skip)] for s in statements],
                "calls": [[id(n) for n in findall(s, m.Call() | m.Name("latents"))] for s in statements],
                "paths": paths_to(statements, is_self),
                "paths by class": paths_to(statements, lambda node: node.value == "self", among=cst.Name),
                "paths to nodes": paths_to_nodes(statements, targets),
            }
        assert found == expected
    assert len(expected["paths"]) > 100 and any(expected["skipping"]) and any(expected["calls"])
    assert targets and expected["paths to nodes"] and expected["paths by class"] == expected["paths"]


def test_remembered_children_are_the_same_children_and_are_forgotten_on_exit(sd_source):
    import libcst.matchers as m

    from modularize.cst import tree_walk
    from modularize.cst.tree_walk import children, findall, remembered_children, walk

    tree = cst.parse_module(sd_source.read_text())
    plain = [[id(child) for child in children(node)] for node in walk(tree)]
    with remembered_children():
        with remembered_children():  # nested: the outer one's memory is kept
            first = [[id(child) for child in children(node)] for node in walk(tree)]
        assert tree_walk._REMEMBERED  # the outer context still remembers
        again = [[id(child) for child in children(node)] for node in walk(tree)]
        calls = findall(tree, m.Call())
    assert first == plain and again == plain
    assert [id(c) for c in calls] == [id(c) for c in findall(tree, m.Call())]
    assert tree_walk._REMEMBERED is None
    # any other fact about a node: computed once within, every time outside
    computed = []

    def fact(node):
        computed.append(node)
        return len(computed)

    with remembered_children():
        assert [tree_walk.remembered("fact", tree, fact) for _ in range(3)] == [1, 1, 1]
    assert tree_walk.remembered("fact", tree, fact) == 2


_TRICKY_CODEGEN = [
    "",
    "\n",
    "x = 1",
    "((x)) = ([1], {2}, {3: (4)}, [(a) for a in (b)], {c for c in d}, {e: f for e, f in g})\n",
    "f((a), [b])  # comment\n\n\n",
    "def g(a, /, b=(1), *c, d: (int) = [2], **e) -> (None):\n    return (yield (a)), lambda: ((b))\n",
    "@(decorator)\nclass C((Base)):\n    x: (int) = (1 if (a) else [b])\n",
]


def test_codegen_without_generators_gives_libcst_code_and_positions(sd_source, monkeypatch):
    """The installed code generation prints, and places every node, exactly as libcst's own generators do."""
    from libcst.metadata import MetadataWrapper, PositionProvider

    from modularize.frontend import codegen
    from modularize.frontend.parse import Positions, code, module_code

    assert all(hasattr(method, "__wrapped__") for _, _, method in codegen.ORIGINALS)  # libcst's @contextmanager
    assert codegen.ORIGINALS[0][0]._parenthesize is not codegen.ORIGINALS[0][2]  # installed by the parse pass

    def outcome(text: str):
        tree = cst.parse_module(text)
        positions = MetadataWrapper(tree, unsafe_skip_copy=True).resolve(PositionProvider)
        own = Positions(tree, text)
        statement_codes = [code(statement) for statement in tree.body]
        return tree.code, module_code(tree), statement_codes, [(positions[n], own[n]) for n in positions]

    for text in [sd_source.read_text(), *_TRICKY_CODEGEN]:
        installed = outcome(text)
        with monkeypatch.context() as patch:
            for cls, name, method in codegen.ORIGINALS:
                patch.setattr(cls, name, method)
            assert outcome(text) == installed
        assert installed[0] == installed[1] == text
        assert all(libcst_position == own_position for libcst_position, own_position in installed[3])


def test_positions_generated_a_method_at_a_time_are_libcst_positions(sd_source):
    """Each method (and module-level statement) generated alone where the module's `ast` puts it: the positions of
    the nodes asked about are libcst's, only the asked methods are generated, and classes and functions start
    where libcst starts them without generating anything; a unit the `ast` does not locate falls back to one pass."""
    import ast

    from libcst.metadata import MetadataWrapper, PositionProvider

    from modularize.cst.tree_walk import walk
    from modularize.frontend.parse import Positions
    from modularize.frontend.source_file import installed_diffusers_file

    texts = [sd_source.read_text(), *_TRICKY_CODEGEN[2:]]
    texts.append(installed_diffusers_file("pipelines/flux/pipeline_flux.py").read_text())
    texts.append(
        "class A:\n\n    # a comment\n    @property\n    def x(self):\n        return (1)\n  # odd\nclass B: pass\n"
    )
    texts.append("import a; import b\nif x:\n\ty = [\n  1]\nasync def f():\n\tawait g()\n")
    for text in texts:
        tree = cst.parse_module(text)
        libcst_positions = MetadataWrapper(tree, unsafe_skip_copy=True).resolve(PositionProvider)
        own = Positions(tree, text, ast.parse(text))
        definitions = [n for n in libcst_positions if isinstance(n, (cst.ClassDef, cst.FunctionDef))]
        for node in definitions:
            assert own.start(node) == libcst_positions[node].start
        calls = [n for n in definitions if isinstance(n, cst.FunctionDef) and n.name.value == "__call__"]
        if calls:
            asked = [n for n in walk(calls[0]) if n in libcst_positions]
            assert len(asked) > 100 and all(own[n] == libcst_positions[n] for n in asked)
            assert [unit.node for unit in own._units if unit.done] == [calls[0]] and not own._complete
        assert all(own[node] == libcst_positions[node] for node in libcst_positions)
    # a unit the `ast` puts elsewhere: everything at once, the same positions
    text = "x = 1\ny = 2\n"
    tree = cst.parse_module(text)
    wrong = ast.parse("\nx = 1\ny = 2\n")
    own = Positions(tree, text, wrong)
    libcst_positions = MetadataWrapper(tree, unsafe_skip_copy=True).resolve(PositionProvider)
    assert own[tree.body[0]] == libcst_positions[tree.body[0]] and own._complete


def test_statement_starts_and_simple_statement_lines_from_the_ast_are_libcst_positions(sd_source):
    """Statements' starts (and simple statements' last lines) are read off the module's `ast`, at any depth: the
    values `PositionProvider` gives, and no code generated for them; a new node stands for its original."""
    import ast

    from libcst.metadata import MetadataWrapper, PositionProvider

    from modularize.frontend.parse import parse_source

    texts = [sd_source.read_text()]
    texts.append(
        "def f(x):\n    if x:  # c\n        a = (1,\n             2); b = 3\n        # trailing\n    elif y:\n"
        "        pass\n    else:\n        for i in x:\n            continue\n        else:\n            z = 1\n"
        "    try:\n        g()\n    except E as e:\n        h()\n    finally:\n        k()\n"
        "    with a as b, c:\n        @deco\n        def inner():\n            return 1\n    while x: x -= 1\n"
    )
    for text in texts:
        source = parse_source(text, "x.py")
        libcst_positions = MetadataWrapper(source.tree, unsafe_skip_copy=True).resolve(PositionProvider)
        statements = [n for n in libcst_positions if isinstance(n, cst.BaseStatement)]
        for node in statements:
            assert source.start(node) == libcst_positions[node].start, cst.Module([]).code_for_node(node)[:40]
        simple = [n for n in statements if isinstance(n, cst.SimpleStatementLine)]
        assert all(
            source.line_span(n) == (libcst_positions[n].start.line, libcst_positions[n].end.line) for n in simple
        )
        assert not source.positions._complete and not any(unit.done for unit in source.positions._units)
        compound = [n for n in statements if not isinstance(n, cst.SimpleStatementLine)]
        assert all(
            source.line_span(n) == (libcst_positions[n].start.line, libcst_positions[n].end.line) for n in compound
        )
        new = cst.Name("fresh")
        aliased = source.with_positions({new: simple[-1]})
        assert aliased.start(new) == source.start(simple[-1]) and aliased.line_span(new) == source.line_span(
            simple[-1]
        )
        assert aliased.positions[new] == libcst_positions[simple[-1]] and aliased.start(cst.Name("x")) is None
    assert ast.parse(texts[1])


def test_source_depth_check_answers_as_the_walk_locating_the_statement(sd_source, monkeypatch):
    """The cheap pass deciding "deeper than the source limit?" agrees, at every limit, with the walk that finds the
    statement to name (which only runs when the answer is yes)."""
    import ast

    from modularize.frontend import nesting

    texts = [
        sd_source.read_text(),
        "x = a and b and c and d\n",
        "import a.b.c.d\nfrom x.y.z import w\n",
        "f(g(h([1, {2: (3, -x)}])))[1:2] if not y else lambda z=1: z\n",
    ]
    for text in texts:
        tree = ast.parse(text)
        answers = []
        for limit in range(0, 60):
            monkeypatch.setattr(nesting, "_SOURCE_LIMIT", limit)
            answers.append(nesting._source_deeper_than(tree, limit))
            assert answers[-1] == (nesting._deep_statement(tree) != (0, 0)), (text[:20], limit)
        assert answers[0] and not answers[-1]


def test_tree_depth_check_finds_the_same_violations_level_by_level(sd_source, monkeypatch):
    """The level-by-level pass answers "deeper than the limit?" as the path-building walk does, at every limit."""
    from modularize.frontend import nesting

    tree = cst.parse_module(sd_source.read_text())
    deepest = next(limit for limit in range(nesting.MAX_DEPTH) if not nesting._deeper_than(tree, limit))
    assert 10 < deepest < nesting.MAX_DEPTH  # the depth of its deepest node
    limits = (1, deepest - 2, deepest - 1, deepest, deepest + 1, nesting.MAX_DEPTH)
    fast = [nesting.tree_depth_violation(tree, limit) for limit in limits]
    monkeypatch.setattr(nesting, "_deeper_than", lambda tree, limit: True)  # always the full walk
    full = [nesting.tree_depth_violation(tree, limit) for limit in limits]
    assert fast == full
    assert [violation is None for violation in full] == [False, False, False, True, True, True]
    assert full[2][0] in tree.body and isinstance(full[2][-1], cst.BaseStatement)


def test_classes_printed_from_their_templates_give_the_bytes_parsing_the_templates_gives(sd_source, monkeypatch):
    """A generated class's body is its template's text with its statements printed in (a stand-in line reading
    the body's names holds its place in the module's tree): the package is the one parsing every template and
    splicing the statements into its tree gives, byte for byte."""
    from modularize.convert import ConvertOptions, plan_for
    from modularize.emit import blocks, splice
    from modularize.emit.package import emit_package
    from modularize.frontend.source_file import read_source
    from modularize.planning.plan import LoopPlan

    source = read_source(str(sd_source))
    plan = plan_for(
        source.text, ConvertOptions(path=str(sd_source), label=source.label, module_name=source.module_name)
    )
    files = emit_package(plan, source.text, "test")
    plain = [block for block in plan.blocks if not isinstance(block, LoopPlan)]
    assert all(blocks.block_class(plan, block).bodies for block in plain)  # the printed way was taken
    assert not any(splice.BODY_MARKER in text for text in files.values())
    monkeypatch.setattr(splice, "_class_header", lambda header: (None, []))  # every template parsed by LibCST
    assert not blocks.block_class(plan, plain[0]).bodies
    assert emit_package(plan, source.text, "test") == files


def test_a_printed_class_body_drops_what_its_placeholders_held_as_libcst_does():
    import libcst as cst

    from modularize.emit import splice
    from modularize.frontend.parse import module_code

    def both(template: str, fills: dict) -> tuple[str, str]:
        printed = splice.printed_class(template, fills)
        text = splice.with_bodies(module_code(cst.Module(body=printed.statements)), printed.bodies)
        return text, module_code(cst.Module(body=splice.splice(template, fills)))

    x = [splice.statement("x = torch.ones(1)")]
    template = (
        "class Step(Base, Mixin):\n"
        "    name = 'step'\n\n"
        "    __modularize_members__\n\n"
        "    def __call__(self, state):\n"
        "        if state:\n"
        "            __modularize_body__\n"
        "        return [y for y in state] + [other]\n"
    )
    members = [splice.statement("def helper(self):\n    return name")]
    for fills in (
        {},
        {"__modularize_body__": x, "__modularize_members__": members},
        {"__modularize_body__": [], "__modularize_members__": []},
    ):
        printed, parsed = both(template, fills)
        assert printed == parsed, fills
    printed, _ = both(template, {"__modularize_body__": [], "__modularize_members__": []})
    assert "            pass\n" in printed and "\n\n\n" not in printed
    (statement,) = splice.printed_class(template, {"__modularize_body__": x, "__modularize_members__": []}).statements
    # the stand-in reads what the class reads from the module, its bases too (not `self`, `state`, `y` nor `name`)
    stand_in = statement.body.body[0]
    assert [e.value.value for e in stand_in.body[0].value.elements] == ["Base", "Mixin", "other", "torch"]
    # a comment right above a placeholder, a header that is not plain: parsed the long way
    assert not splice.printed_class(
        "class A:\n    # note\n    __modularize_body__\n", {"__modularize_body__": x}
    ).bodies
    assert not splice.printed_class("class A(b.C):\n    pass\n", {}).bodies
    with pytest.raises(ValueError, match="not printed once"):
        splice.with_bodies("nothing here\n", {"    a  # modularize: body of A\n": "    pass\n"})


def test_the_collector_is_paused_during_a_conversion_and_restored_after(monkeypatch):
    import gc

    from modularize import convert as convert_module
    from modularize.collector import collector_paused

    seen = []
    monkeypatch.setattr(convert_module, "parse_source", lambda *args: seen.append(gc.isenabled()) or 1 / 0)
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError):
        convert_module.convert("x = 1\n", convert_module.ConvertOptions(path="x.py"))
    assert seen == [False] and gc.isenabled()  # restored after an exception too
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # a collector the caller turned off stays off
    finally:
        gc.enable()


def test_a_conversion_leaves_no_reference_cycle_holding_its_trees(sd_source):
    """What a conversion made is freed when it ends, by reference counting: the collector is paused while it runs
    (`collector`), and a cycle (a class made per call, a closure calling itself, an exception kept with its
    traceback) would keep its trees alive until a collection, which then has all of them to traverse. Neither
    does a matcher made for one search stay remembered after it (`match_filter`)."""
    import gc

    from modularize.convert import ConvertOptions, convert
    from modularize.cst import match_filter
    from modularize.frontend.source_file import read_source

    source = read_source(str(sd_source))
    options = ConvertOptions(path=str(sd_source), label=source.label, module_name=source.module_name)
    convert(source.text, options)  # caches of the process (runtime modules, ...) filled
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        convert(source.text, options)
        gc.collect()
        kept = [type(found) for found in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert not [kind for kind in kept if issubclass(kind, cst.CSTNode)]
    assert len(kept) < 1_000  # (the standard library's `literal_eval`, which LibCST calls, leaves small ones)
    assert all(reference() is not None for reference, _, _ in match_filter._RECENT.values())


def test_a_pipeline_several_pipelines_of_a_file_build_is_parsed_and_planned_once(tmp_path, monkeypatch):
    """Two pipelines of one module building the same one (Kandinsky's three combined pipelines build one prior):
    within one conversion context its module is parsed and it is planned once, to the plan planning it for each
    gives; a pipeline building one that builds it is still refused."""
    from modularize import convert as convert_module
    from modularize.cst.tree_walk import remembered_children
    from modularize.emit.package import emit_package
    from modularize.errors import ConversionError
    from modularize.frontend.parse import parse_source
    from modularize.frontend.source_file import module_reader

    case = tmp_path.__class__(__file__).parent / "cases" / "sub_pipelines" / "draft_then_refine"
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "draft.py").write_text((case / "draft.py").read_text())
    text = (case / "input.py").read_text()
    text += "\n\n" + text[text.index("class DraftThenRefinePipeline") :].replace("DraftThenRefine", "OtherThenRefine")
    (package / "combined.py").write_text(text)
    source = parse_source(text, str(package / "combined.py"), "pkg/combined.py", "pkg.combined")
    read = module_reader(package / "combined.py")
    classes = ("DraftThenRefinePipeline", "OtherThenRefinePipeline")
    alone = [convert_module.plan_of(source, name, read) for name in classes]

    planned = []
    real_plan_of, real_parse = convert_module.plan_of, convert_module.parse_source
    monkeypatch.setattr(convert_module, "plan_of", lambda *a, **k: planned.append(a[1]) or real_plan_of(*a, **k))
    monkeypatch.setattr(convert_module, "parse_source", lambda *a: planned.append(a[1]) or real_parse(*a))
    with remembered_children():
        together = [convert_module.plan_of(source, name, read) for name in classes]
    assert planned == [*classes[:1], str(package / "draft.py"), "DraftPipeline", classes[1]]
    assert together[0].sub_pipelines[0].plan is together[1].sub_pipelines[0].plan
    packages = [emit_package(plan, text, "test") for plan in together]
    assert packages == [emit_package(plan, text, "test") for plan in alone]
    with remembered_children(), pytest.raises(ConversionError, match="builds the pipeline building it"):
        convert_module.plan_of(source, classes[0], read)
        convert_module._sub_pipeline(
            source,
            convert_module.sub_pipeline_uses(source, source.class_named(classes[0]))[0],
            False,
            read,
            ("pkg.draft.DraftPipeline",),
        )


def test_the_node_classes_compared_by_exact_class_have_no_subclasses():
    """The walks, the dataflow and the searches compare `type(node) is cst.X` (an `isinstance` miss goes through
    `ABCMeta`): right only while LibCST's concrete node classes stay final."""
    import inspect

    concrete = [c for _, c in inspect.getmembers(cst, inspect.isclass) if issubclass(c, cst.CSTNode)]
    concrete = [c for c in concrete if not inspect.isabstract(c) and not c.__name__.startswith("Base")]
    assert len(concrete) > 100
    assert [c.__name__ for c in concrete if c.__subclasses__()] == []


def test_ast_keys_tell_apart_what_ast_dump_tells_apart_and_leave_no_cycle():
    import ast
    import gc

    from modularize.cst.ast_key import ast_key

    texts = [
        "a + b",
        "(a + b)",
        "a+b  # c",
        "a - b",
        "1",
        "1.0",
        "True",
        "'1'",
        "f(x, y=1)",
        "f(x, y=2)",
        "f(y=1, x=x)",
        "[i for i in x if i]",
        "{1: 2}",
        "{1, 2}",
        "(1, 2)",
        "[1, 2]",
        "a.b[c:d]",
        "a.b[c:d:]",
        "lambda x=None: x",
        "not a",
        "-a",
        "a if b else c",
        "u'x'",
        "'x'",
        "b'x'",
        "f'{x!r}'",
        "f'{x}'",
    ]
    for first in texts:
        for second in texts:
            a, b = ast.parse(first, mode="eval"), ast.parse(second, mode="eval")
            assert (ast_key(a) == ast_key(b)) == (ast.dump(a) == ast.dump(b)), (first, second)
    gc.collect()
    for text in texts:
        hash(ast_key(ast.parse(text, mode="eval")))
    assert gc.collect() == 0


def test_read_only_visits_call_a_visitor_as_libcst_does_without_rebuilding(sd_source):
    from modularize.cst.tree_walk import visit_read_only

    significant = (cst.BaseExpression, cst.BaseStatement, cst.BaseSmallStatement, cst.Arg, cst.Param, cst.Decorator)

    class Record(cst.CSTVisitor):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[str, int]] = []

        def on_visit(self, node: cst.CSTNode) -> bool:
            if isinstance(node, significant):
                self.calls.append(("visit", id(node)))
            return not isinstance(node, cst.Lambda)  # a subtree skipped

        def on_leave(self, original_node: cst.CSTNode) -> None:
            if isinstance(original_node, significant):
                self.calls.append(("leave", id(original_node)))

    tree = cst.parse_module(sd_source.read_text())
    expected, found = Record(), Record()
    tree.visit(expected)
    visit_read_only(tree, found)
    assert len(found.calls) > 5_000 and found.calls == expected.calls


def test_block_bindings_are_built_as_the_parser_builds_them():
    from modularize.emit import blocks
    from modularize.emit.splice import statement

    for name in ("latents", "prompt_embeds", "t"):
        pairs = [
            (blocks._binding(name), f"{name} = block_state.{name}"),
            (blocks._write_back(name), f"block_state.{name} = {name}"),
            (blocks._write_back(name, "local_value"), f"block_state.{name} = local_value"),
            (blocks._binding_or_none(name), f"{name} = getattr(block_state, {name!r}, None)"),
        ]
        for built, text in pairs:
            assert built.deep_equals(statement(text)), text


def test_an_unread_copy_of_a_tensor_is_a_plain_assignment_but_a_move_of_a_module_is_not():
    import libcst as cst

    from modularize.cst.dataflow import is_plain_assignment

    assert is_plain_assignment(cst.parse_statement("timesteps_cpu = timesteps.cpu()\n"))
    assert is_plain_assignment(cst.parse_statement("n = len(x)\n"))
    # `.to()` / `.float()` change a module in place; `.cpu(...)` with arguments is not the plain copy
    for text in ("y = x.to(device)\n", "y = x.float()\n", "y = self.unet.cpu()\n", "y = f(x)\n"):
        assert not is_plain_assignment(cst.parse_statement(text)), text


@pytest.mark.parametrize(
    ("hint", "checkable"),
    [
        ("ControlNetModel", "ControlNetModel"),
        (
            "ControlNetModel | list[ControlNetModel] | tuple[ControlNetModel] | MultiControlNetModel",
            "ControlNetModel | MultiControlNetModel",
        ),
        ("AutoencoderKL | None", "AutoencoderKL | None"),
        ("list[ControlNetModel]", None),
        (None, None),
    ],
)
def test_a_components_spec_type_is_what_isinstance_can_check(hint, checkable):
    """`ModularPipeline.update_components` checks a component against its spec's type with `isinstance`, which
    raises for a `list[...]` member it reaches (a multi-ControlNet passed to `ControlNetModel | list[...] | ...`)."""
    from modularize.analysis.analyze import _checkable

    assert _checkable(hint) == checkable
