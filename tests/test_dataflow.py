"""Def-use analysis: what a statement sequence reads before writing, writes, and writes on every path."""

from textwrap import dedent

from modularize.cst.dataflow import flow_of, names_read, parse_statements


def flow(text: str, bound=()):
    return flow_of(parse_statements(text), bound)


def test_read_then_write_is_an_input_and_an_output():
    result = flow("latents = latents * sigma\n")
    assert result.reads == ("latents", "sigma")
    assert result.writes == ("latents",)
    assert result.definite == {"latents"}


def test_a_conditional_write_is_not_definite_so_later_reads_still_need_the_incoming_value():
    result = flow("if not height:\n    height = 64\nshape = (height, width)\n")
    assert result.reads == ("height", "width")
    assert result.definite == {"shape"}


def test_both_branches_writing_makes_the_name_definite():
    result = flow("if x:\n    y = 1\nelse:\n    y = 2\nz = y\n")
    assert result.reads == ("x",)
    assert result.definite == {"y", "z"}


def test_a_branch_that_raises_does_not_count_against_definiteness():
    result = flow("if prompt is None:\n    raise ValueError('no prompt')\nelse:\n    batch = len(prompt)\nn = batch\n")
    assert result.reads == ("prompt", "ValueError", "len")  # builtins are reads; callers keep their variables
    assert "batch" in result.definite


def test_loops_may_not_run_so_their_writes_are_not_definite():
    result = flow("for i, t in enumerate(timesteps):\n    latents = step(latents, t)\n")
    assert result.reads == ("enumerate", "timesteps", "step", "latents")
    assert "latents" in result.writes and "latents" not in result.definite


def test_comprehension_and_lambda_variables_are_local_to_them():
    result = flow("flags = [not flag for flag in nsfw]\nkey = lambda item: item[offset]\n")
    assert result.reads == ("nsfw", "offset")
    assert set(result.writes) == {"flags", "key"}


def test_attribute_and_keyword_names_are_not_reads():
    result = flow("out = pipe.unet(x, encoder_hidden_states=embeds).sample\n")
    assert result.reads == ("pipe", "x", "embeds")


def test_augmented_assignment_reads_and_writes():
    result = flow("total += step\n")
    assert result.reads == ("step", "total")
    assert result.writes == ("total",)


def test_bound_names_are_not_reads():
    assert flow("noise = model(latents, t)\n", bound=("t",)).reads == ("model", "latents")


def test_names_read_collects_every_free_name_in_order():
    statement = parse_statements("if a:\n    b = c\nd = b + a\n")
    assert names_read(statement[0]) == ["a", "c"]


def test_each_method_is_its_own_scope_and_the_class_body_is_not_visible_in_methods():
    result = flow(
        dedent(
            """\
        class Pipeline:
            size = 8

            def __init__(self, vae):
                channels = vae.channels
                self.vae = vae

            @property
            def processor(self):
                return Processor(channels, size, self.vae)
        """
        )
    )
    # `channels` is a local of `__init__` and `size` a class attribute: neither is defined inside `processor`
    assert result.reads == ("property", "Processor", "channels", "size")
    assert result.writes == ("Pipeline",)


def test_a_nested_function_sees_the_enclosing_functions_locals():
    result = flow(
        dedent(
            """\
        def outer(x):
            scale = 2

            def inner(y):
                return y * scale + offset

            return inner(x)
        """
        )
    )
    assert result.reads == ("offset",)


def test_a_function_reads_its_annotations_and_decorators_where_it_is_defined():
    (function,) = parse_statements(
        "@cache\ndef f(x: Tensor, y=DEFAULT) -> list[dict[str, Any]]:\n    z: Local = x\n    return z\n"
    )
    assert set(names_read(function)) == {"cache", "Tensor", "DEFAULT", "list", "dict", "str", "Any", "Local"}
