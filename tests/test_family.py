"""A model family: several pipelines as the workflows of one package (`planning.family`, `emit.family`).

The `paint` case (`tests/cases/family/paint/`) is two small pipelines written for it; its expected plan and package
are regenerated from the repository root with

    .venv/bin/modularize plan tests/cases/family/paint/pipeline_paint.py \\
        tests/cases/family/paint/pipeline_paint_img2img.py > tests/cases/family/paint/expected/plan.txt
    .venv/bin/modularize convert tests/cases/family/paint/pipeline_paint.py \\
        tests/cases/family/paint/pipeline_paint_img2img.py -o tests/cases/family/paint/expected/package -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modularize.convert import ConvertOptions, plan_for
from modularize.errors import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from modularize.frontend.source_file import installed_diffusers_file, read_source
from modularize.planning.family import _common_prefix, family_plan

ROOT = Path(__file__).resolve().parent.parent
PAINT = Path("tests/cases/family/paint")
PAINT_FILES = [PAINT / "pipeline_paint.py", PAINT / "pipeline_paint_img2img.py"]
PAINT_SKETCH = PAINT / "pipeline_paint_sketch.py"  # its `image` is a sketch: not the image-to-image's
SD = [
    "pipelines/stable_diffusion/pipeline_stable_diffusion.py",
    "pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.py",
    "pipelines/stable_diffusion/pipeline_stable_diffusion_inpaint.py",
]


def plan_of_file(path: Path):
    source = read_source(str(path))
    return plan_for(source.text, ConvertOptions(path=str(path), label=source.label, module_name=source.module_name))


@pytest.fixture(scope="module")
def sd_family():
    return family_plan([plan_of_file(installed_diffusers_file(relative)) for relative in SD])


def by_name(items, name):
    (found,) = [item for item in items if getattr(item, "key", None) == name or getattr(item, "name", None) == name]
    return found


def test_the_paint_family_plan_is_the_expected_one(cli, monkeypatch):
    monkeypatch.chdir(ROOT)
    run = cli("plan", *PAINT_FILES)
    assert run.code == EXIT_OK, run.err
    assert run.out == (PAINT / "expected" / "plan.txt").read_text(), "regenerate it as this module's docstring says"


def test_paint_shares_what_is_the_same_code_and_keeps_the_rest_per_workflow(monkeypatch):
    monkeypatch.chdir(ROOT)
    family = family_plan([plan_of_file(path) for path in PAINT_FILES])
    assert [(w.name, w.trigger) for w in family.workflows] == [("img2img", "image"), ("base", None)]
    # the stage comments and class names differ ("Paint..." / "PaintImg2Img..."): the code does not
    for key in ("encode_words", "denoise", "decode_pixels"):
        assert by_name(family.blocks, key).groups == (("img2img", "base"),), key
    ticks = by_name(family.blocks, "prepare_ticks")
    assert ticks.groups == (("img2img",), ("base",))
    assert ticks.differences[0].where == "body[1]"
    assert ticks.differences[0].other == "ticks = components.scheduler.timesteps"
    assert by_name(family.blocks, "vae_encoder").groups == (("img2img",),)
    assert by_name(family.helpers, "encode_prompt").groups == (("img2img", "base"),)
    carried, largest = family.lines_written()
    assert largest < carried < 2 * largest


def test_stable_diffusion_workflows_are_selected_by_mask_image_then_image(sd_family):
    assert [w.name for w in sd_family.workflows] == ["inpaint", "img2img", "base"]
    assert [w.trigger for w in sd_family.workflows] == ["mask_image", "image", None]
    assert sd_family.prefix == "StableDiffusion"


def test_stable_diffusion_shares_its_copied_helpers_but_not_its_denoising_loops(sd_family):
    everyone = (("inpaint", "img2img", "base"),)
    for helper in ("encode_prompt", "encode_image", "prepare_ip_adapter_image_embeds", "run_safety_checker"):
        assert by_name(sd_family.helpers, helper).groups == everyone, helper
    assert by_name(sd_family.blocks, "prepare_extra_step_kwargs").groups == everyone
    # text-to-image checks `hasattr(scheduler, "scale_model_input")`, the others do not
    denoise = by_name(sd_family.blocks, "denoise")
    assert len(denoise.groups) == 3
    assert denoise.differences[1].where.startswith("steps[before_denoiser].body")
    # ... but image-to-image and inpainting run the same denoiser step, which is one class
    assert by_name(denoise.parts, "denoiser").groups == (("inpaint", "img2img"), ("base",))
    assert by_name(denoise.parts, "wrapper").groups == (("inpaint", "img2img"), ("base",))


def test_plan_json_lists_workflows_and_sharing(cli, monkeypatch):
    monkeypatch.chdir(ROOT)
    run = cli("plan", *PAINT_FILES, "--json")
    assert run.code == EXIT_OK, run.err
    summary = json.loads(run.out)
    assert [w["trigger"] for w in summary["workflows"]] == ["image", None]
    assert by_dict(summary["blocks"], "denoise")["shared"] == [["img2img", "base"]]
    assert by_dict(summary["blocks"], "prepare_ticks")["differences"][0]["where"] == "body[1]"
    assert summary["lines"]["family"] > summary["lines"]["largest_workflow"]


def by_dict(items, name):
    (found,) = [item for item in items if item["name"] == name]
    return found


def test_workflows_no_argument_tells_apart_are_refused(cli, tmp_path):
    text = (ROOT / PAINT_FILES[0]).read_text()
    twin = tmp_path / "pipeline_paint_twin.py"
    twin.write_text(text.replace("class PaintPipeline(", "class PaintTwinPipeline("))
    run = cli("plan", ROOT / PAINT_FILES[0], twin)
    assert run.code == EXIT_REFUSED
    assert "no call can select one of `PaintTwinPipeline`, `PaintPipeline` by its inputs" in run.err
    assert "Traceback" not in run.err


def test_the_same_class_twice_and_class_with_several_files_are_errors(cli):
    run = cli("plan", ROOT / PAINT_FILES[0], ROOT / PAINT_FILES[0])
    assert run.code == EXIT_REFUSED
    assert "given twice" in run.err
    run = cli("plan", ROOT / PAINT_FILES[0], ROOT / PAINT_FILES[1], "--class", "PaintPipeline")
    assert run.code == EXIT_USAGE


@pytest.mark.parametrize(
    "prefixes, common",
    [
        (["StableDiffusion", "StableDiffusionImg2Img", "StableDiffusionInpaint"], "StableDiffusion"),
        (["StableDiffusion3", "StableDiffusion3Img2Img"], "StableDiffusion3"),
        (["StableDiffusionXL", "StableDiffusionXLImg2Img"], "StableDiffusionXL"),
        (["StableDiffusionX2", "StableDiffusionXL"], "StableDiffusion"),  # a word is never cut
        (["Flux", "FluxFill"], "Flux"),
        (["Paint", "Draw"], ""),
    ],
)
def test_the_family_prefix_ends_where_a_word_ends(prefixes, common):
    assert _common_prefix(prefixes) == common


# -- the family's package -------------------------------------------------------------------------------------------
EXPECTED_PACKAGE = PAINT / "expected" / "package"
SD_ROOT = "pipelines/stable_diffusion"


def package_files(directory: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(directory.glob("*.py"))}


def test_the_paint_family_package_is_the_expected_one_and_converting_again_changes_nothing(cli, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "modular_paint"
    assert cli("convert", *PAINT_FILES, "-o", out, "-q").code == EXIT_OK
    assert package_files(out) == package_files(ROOT / EXPECTED_PACKAGE), "regenerate it as the docstring says"
    run = cli("convert", *PAINT_FILES, "-o", out, "--check")
    assert run.code == EXIT_OK and "up to date" in run.out


def test_the_family_blocks_list_their_workflows_and_select_by_inputs():
    from modularize.testing.equivalence import load_package, package_classes

    pipeline_cls, blocks_cls = package_classes(load_package(ROOT / EXPECTED_PACKAGE))
    blocks = blocks_cls()
    assert blocks.available_workflows == ["img2img", "base"]
    # (diffusers names a nested block by its path: `workflows.vae_encoder`)
    image_to_image = [name.rpartition(".")[2] for name in blocks.get_workflow("img2img").sub_blocks]
    assert image_to_image[-4:] == ["vae_encoder", "prepare_latent_noise", "denoise", "decode_pixels"]
    assert "workflows.vae_encoder" not in blocks.get_workflow("base").sub_blocks
    workflows = blocks.sub_blocks["workflows"]
    assert workflows.select_block(image=object()) == "img2img" and workflows.select_block(image=None) is None
    pipe = blocks.init_pipeline()
    assert type(pipe) is pipeline_cls
    assert pipe.workflow_for({"prompt": "a cat"}) == "base" and pipe.workflow_for({"image": object()}) == "img2img"
    # what the workflows' pipeline classes define differently is the running workflow's
    assert "image" not in pipe.block_arguments
    with pipe.running_workflow("img2img"):
        assert "image" in pipe.block_arguments


def test_a_family_package_is_stale_when_any_of_its_sources_changes(cli, monkeypatch, tmp_path):
    for path in PAINT_FILES:
        (tmp_path / path.name).write_text((ROOT / path).read_text())
    monkeypatch.chdir(tmp_path)
    names = [path.name for path in PAINT_FILES]
    assert cli("convert", *names, "-o", "modular_paint", "-q").code == EXIT_OK
    assert cli("check").code == EXIT_OK
    edited = tmp_path / names[1]
    edited.write_text(edited.read_text().replace("num_inference_steps: int = 8", "num_inference_steps: int = 9"))
    run = cli("check")
    assert run.code == EXIT_FAILED
    assert f"{names[1]} changed" in run.out
    # (the sources in the family's order, the workflows' selection order, which the headers record)
    assert f"modularize convert {names[1]}::PaintImg2ImgPipeline {names[0]}::PaintPipeline -o modular_paint" in run.out
    run = cli("check", "--fix")
    assert run.code == EXIT_FAILED and "regenerated" in run.out
    assert cli("check").code == EXIT_OK
    assert (
        "num_inference_steps=9" in (tmp_path / "modular_paint" / "modular_pipeline.py").read_text().replace(" ", "")
        or "default=9" in (tmp_path / "modular_paint" / "before_denoise.py").read_text()
    )


def test_a_single_pipelines_package_is_not_replaced_by_a_family_unless_forced(cli, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "modular_paint"
    assert cli("convert", PAINT_FILES[0], "-o", out, "-q").code == EXIT_OK
    run = cli("convert", *PAINT_FILES, "-o", out)
    assert run.code == EXIT_USAGE and "--force" in run.err
    assert cli("convert", *PAINT_FILES, "-o", out, "--force", "-q").code == EXIT_OK


@pytest.mark.slow
def test_each_paint_workflow_is_bitwise_its_standard_pipeline_through_the_family_pipeline(monkeypatch):
    from modularize.commands.verify import verify_package

    monkeypatch.chdir(ROOT)
    report = verify_package(EXPECTED_PACKAGE, exact=True)
    names = {case.name.partition(":")[0] for case in report.cases}
    assert names == {"img2img", "base"}
    assert all(c.status == "compared" and c.bitwise for c in report.cases), [c for c in report.cases if not c.bitwise]


@pytest.mark.slow
def test_each_block_of_each_paint_workflow_runs_alone(monkeypatch):
    """`block.init_pipeline()` builds the family's pipeline, which runs one block as a workflow running it."""
    from modularize.testing.standalone_blocks import blocks_alone

    monkeypatch.chdir(ROOT)
    for workflow, count in (("img2img", 7), ("base", 6)):
        results = blocks_alone(EXPECTED_PACKAGE, workflow=workflow)
        assert len(results) == count and all(r.status == "equal" for r in results), (workflow, results)


@pytest.mark.slow
def test_stable_diffusion_text_image_and_inpainting_as_one_package_each_bitwise(cli, tmp_path):
    """The acceptance of the family issue for SD: every workflow of the merged package, through the family's
    pipeline, plain and exact, on the built-in matrices of the standard pipelines."""
    from modularize.commands.verify import verify_package
    from modularize.output.lint import lint_packages

    out = tmp_path / "modular_stable_diffusion"
    sources = [installed_diffusers_file(relative) for relative in SD]
    assert cli("convert", *sources, "-o", out, "-q").code == EXIT_OK
    assert lint_packages(tmp_path) == {}
    report = verify_package(out, exact=True)
    workflows = [case.name.partition(":")[0] for case in report.cases]
    assert sorted(set(workflows)) == ["base", "img2img", "inpaint"]
    assert all(c.status == "compared" and c.bitwise for c in report.cases), [c for c in report.cases if not c.bitwise]


def test_a_module_function_the_sources_define_differently_is_kept_per_workflow(cli, tmp_path, monkeypatch):
    """`planning.family_modules`: each workflow's blocks call its own source's definition, under a name of its
    own where they differ, and a block calling differently defined functions is not shared."""
    for path, factor in zip(PAINT_FILES, ("2", "3"), strict=True):
        text = (ROOT / path).read_text()
        text = text.replace("\n\nclass ", f"\n\ndef shade(x):\n    return x * {factor}\n\n\nclass ", 1)
        text = text.replace(
            "        image = self.vae.decode(sample / self.vae.config.scaling_factor).sample\n",
            "        image = shade(self.vae.decode(sample / self.vae.config.scaling_factor).sample)\n",
        )
        (tmp_path / path.name).write_text(text)
    monkeypatch.chdir(tmp_path)
    names = [path.name for path in PAINT_FILES]
    family = family_plan([plan_of_file(Path(name)) for name in names])
    decode = by_name(family.blocks, "decode_pixels")
    assert decode.groups == (("img2img",), ("base",))
    assert decode.differences[0].where == "the module-level definitions it reads"
    assert by_name(family.blocks, "denoise").groups == (("img2img", "base"),)  # (it calls no `shade`)
    assert family.renamed_module_names("base") == {"shade": "shade_base"}
    assert cli("convert", *names, "-o", "modular_paint", "-q").code == EXIT_OK
    decoders = (tmp_path / "modular_paint" / "decoders.py").read_text()
    assert "def shade(x):\n    return x * 3" in decoders  # img2img's, the first workflow's
    assert "def shade_base(x):\n    return x * 2" in decoders
    assert decoders.count("shade_base(") == 2  # defined, and called by the base workflow's decoding


@pytest.mark.slow
def test_a_saved_family_pipeline_loads_back_with_diffusers_alone_and_runs_each_workflow(tmp_path, monkeypatch):
    """`save_pretrained`, then `ModularPipeline.from_pretrained(..., trust_remote_code=True)` in a fresh process:
    the family's class, its blocks, and the image-to-image workflow selected by `image`, bitwise."""
    from modularize.testing.saved_pipeline import saved_and_loaded

    monkeypatch.chdir(ROOT)
    result = saved_and_loaded(EXPECTED_PACKAGE, tmp_path, workflow="img2img")
    assert (result.pipeline_class, result.blocks_class) == (
        "PaintFamilyGeneratedModularPipeline",
        "PaintFamilyGeneratedBlocks",
    )
    assert result.differences and result.bitwise, result.differences


def test_verify_names_the_workflows_of_a_family_package_it_does_not_know(cli, monkeypatch):
    monkeypatch.chdir(ROOT)
    run = cli("verify", EXPECTED_PACKAGE, "--workflow", "inpaint", "--no-png")
    assert run.code == EXIT_USAGE
    assert "'inpaint' is not a workflow of this family's package (img2img, base)" in run.err


def test_emit_tests_writes_each_workflows_cases_for_a_family_package(cli, tmp_path):
    """(Running such a file: 52 tests pass for SD text-to-image + image-to-image; the single-package template's
    own runs are slow tests of `test_emit_tests.py`.)"""
    out, tests = tmp_path / "modular_sd", tmp_path / "tests"
    sources = [installed_diffusers_file(relative) for relative in SD[:2]]
    assert cli("convert", *sources, "-o", out, "-q", "--emit-tests", tests).code == EXIT_OK
    text = (tests / "test_modular_sd.py").read_text()
    compile(text, "test_modular_sd.py", "exec")
    namespace: dict = {}
    exec(text.split("CASES = ")[0].split("PACKAGE = ")[1].split("\n", 1)[1], namespace)  # COMPONENTS, WORKFLOWS
    assert list(namespace["WORKFLOWS"]) == ["img2img", "base"]
    assert all(len(cases) > 3 for cases in namespace["WORKFLOWS"].values())  # the built-in matrices
    assert "Equivalence(PACKAGE, COMPONENTS, workflow=workflow)" in text


def test_a_workflow_from_a_file_holding_several_pipelines_is_named_file_colon_colon_class(cli, monkeypatch, tmp_path):
    text = (ROOT / PAINT_FILES[0]).read_text()
    start = text.index("class PaintPipeline(")
    twin = text[start:].replace("class PaintPipeline(", "class PaintTwinPipeline(")
    (tmp_path / "pipeline_both.py").write_text(text + "\n\n" + twin)
    (tmp_path / PAINT_FILES[1].name).write_text((ROOT / PAINT_FILES[1]).read_text())
    monkeypatch.chdir(tmp_path)
    run = cli("convert", "pipeline_both.py", PAINT_FILES[1].name, "-o", "modular_paint")
    assert run.code == EXIT_USAGE and "FILE::NAME" in run.err
    given = ["pipeline_both.py::PaintPipeline", PAINT_FILES[1].name]
    assert cli("convert", *given, "-o", "modular_paint", "-q").code == EXIT_OK
    assert "PaintPipeline" in (tmp_path / "modular_paint" / "modular_pipeline.py").read_text()
    assert cli("check").code == EXIT_OK
    both = tmp_path / "pipeline_both.py"
    both.write_text(both.read_text().replace("num_inference_steps: int = 8", "num_inference_steps: int = 7", 1))
    run = cli("check")
    assert run.code == EXIT_FAILED and "pipeline_both.py::PaintPipeline" in run.out
    assert cli("check", "--fix").code == EXIT_FAILED and cli("check").code == EXIT_OK


@pytest.mark.parametrize(
    "code, handled",
    [
        ("image = image or default_image", True),  # does without it
        ("picture = default_image or image", False),  # only falls back to it
        ("x = 1 if image else 2", True),
        ("if image is None:\n    raise ValueError('give an image')", False),  # requires it
        ("if image is not None and embeds is not None:\n    raise ValueError('one of them')", False),
        ("if image is not None or embeds is not None:\n    raise ValueError('not served')", True),  # never given
        ("image = preprocess(image)", False),
        ("self.encode(components, 'a', prompt_2=image)", True),  # handed to a parameter the helper does without
        ("self.encode(components, image)", False),  # handed to `prompt`, which it needs
        ("ticks = retrieve_timesteps(components.scheduler, 4, image)", True),  # a module function does without it
    ],
)
def test_an_argument_a_workflow_does_without_is_no_trigger(code, handled):
    import libcst as cst

    from modularize.planning.family_triggers import _handled_in

    helper = cst.parse_statement("def encode(components, prompt, prompt_2=None):\n    prompt_2 = prompt_2 or prompt\n")
    module_function = cst.parse_statement(
        "def retrieve_timesteps(scheduler, steps, timesteps=None):\n"
        "    if timesteps is not None:\n"
        "        scheduler.set_timesteps(timesteps=timesteps)\n"
    )
    callees = {"self.encode": helper, "retrieve_timesteps": module_function}
    assert _handled_in([cst.parse_module(code + "\n")], "image", callees) is handled


def test_a_workflow_selected_only_by_arguments_its_calls_may_leave_out_is_refused(cli):
    """SDXL's T2I-Adapter beside SD's: what only SDXL takes, `prompt_2` (`prompt_2 = prompt_2 or prompt`), the size
    conditioning, the IP-Adapter image (not served: given, it raises), a call may leave out."""
    sources = [
        installed_diffusers_file(f"pipelines/t2i_adapter/{name}.py")
        for name in ("pipeline_stable_diffusion_adapter", "pipeline_stable_diffusion_xl_adapter")
    ]
    run = cli("plan", *sources)
    assert run.code == EXIT_REFUSED, run.out
    assert "`StableDiffusionXLAdapterPipeline` handles `prompt_2`, `denoising_end`" in run.err
    assert "`ip_adapter_image`" in run.err and "Traceback" not in run.err


def test_two_groups_of_workflows_sharing_a_block_at_one_key_are_two_classes():
    """SDXL's latents: ControlNet inpainting with inpainting, ControlNet with the default; image-to-image apart."""
    from types import SimpleNamespace

    from modularize.planning.family import _with_prefixes
    from modularize.planning.family_sharing import FamilyBlock, Workflow

    prefixes = {"cn_inpaint": "XLControlNetInpaint", "inpaint": "XLInpaint", "img2img": "XLImg2Img", "cn": "XLCn"}
    workflows = [Workflow(name, None, SimpleNamespace(prefix=p)) for name, p in {**prefixes, "base": "XL"}.items()]
    groups = (("cn_inpaint", "inpaint"), ("img2img",), ("cn", "base"))
    block = _with_prefixes(FamilyBlock("latents", groups, (1, 1, 1)), workflows, "XL")
    assert block.prefixes == ("XL", "XLImg2Img", "XLCn")
    base_first = _with_prefixes(
        FamilyBlock("latents", (("inpaint", "cn"), ("base", "img2img")), (1, 1)), workflows, "XL"
    )
    assert base_first.prefixes == ("XL", "XLBase")


def test_a_workflow_needing_an_argument_another_workflow_needs_takes_it_under_its_own_name(monkeypatch):
    """`image` is the sketch workflow's sketch and the image-to-image workflow's starting image: the workflow given
    later takes it as `sketch_image`, its blocks binding it to the `image` their code reads; what they compute keeps
    its names (the decoded `image` is still the output `image`)."""
    monkeypatch.chdir(ROOT)
    family = family_plan([plan_of_file(path) for path in [*PAINT_FILES, PAINT_SKETCH]])
    assert [(w.name, w.trigger, w.renamed) for w in family.workflows] == [
        ("img2img", "image", ()),
        ("sketch", "sketch_image", (("image", "sketch_image"),)),
        ("base", None, ()),
    ]
    sketch = family.workflow("sketch").plan
    inputs = [p for block in sketch.blocks for p in block.inputs if p.local is not None]
    assert [(p.name, p.local, p.producer) for p in inputs] == [("sketch_image", "image", None)]
    assert "sketch_image" in sketch.block_arguments and "image" not in sketch.block_arguments
    # the decoded image, the pipeline's output, is what the decode block computes: produced, not renamed
    decoded = [o for block in sketch.blocks for o in block.outputs if o.local == "image"]
    assert [o.name for o in decoded] == [name for _, name in sketch.outputs] == ["images"]
    img2img = family.workflow("img2img").plan
    assert not [p for block in img2img.blocks for p in block.inputs if p.local is not None]


def test_the_plan_says_which_argument_a_workflow_takes_under_another_name(cli, monkeypatch):
    monkeypatch.chdir(ROOT)
    run = cli("plan", *PAINT_FILES, PAINT_SKETCH)
    assert run.code == EXIT_OK, run.err
    assert (
        "sketch: PaintSketchPipeline (tests/cases/family/paint/pipeline_paint_sketch.py), when `sketch_image`"
        in run.out
    )
    assert "takes `image` as `sketch_image`: another workflow needs an `image` of its own" in run.out
    data = json.loads(cli("plan", *PAINT_FILES, PAINT_SKETCH, "--json").out)
    assert by_dict(data["workflows"], "sketch")["renamed"] == {"image": "sketch_image"}


@pytest.mark.slow
def test_a_workflow_taking_an_argument_under_its_own_name_is_bitwise_and_its_blocks_run_alone(
    cli, monkeypatch, tmp_path
):
    from modularize.commands.verify import verify_package
    from modularize.testing.standalone_blocks import blocks_alone

    monkeypatch.chdir(ROOT)
    package = tmp_path / "modular_paint"
    assert cli("convert", *PAINT_FILES, PAINT_SKETCH, "-o", package, "-q").code == EXIT_OK
    report = verify_package(package, exact=True)
    assert {case.name.partition(":")[0] for case in report.cases} == {"img2img", "sketch", "base"}
    assert all(c.status == "compared" and c.bitwise for c in report.cases), [c for c in report.cases if not c.bitwise]
    results = blocks_alone(package, workflow="sketch")
    assert len(results) == 7 and all(r.status == "equal" for r in results), results


def test_sdxl_controlnet_beside_image_to_image_takes_its_control_image_as_control_net_image():
    """SDXL image-to-image beside SDXL ControlNet: `image` is the init image of one and the control image of the
    other, and the image-to-image pipeline's only argument of its own, `denoising_start`, is one it runs without
    (`add_noise = True if denoising_start is None else False`): ControlNet, given later, takes its `image` as
    `control_net_image`."""
    sources = [
        installed_diffusers_file(f"pipelines/{relative}.py")
        for relative in (
            "stable_diffusion_xl/pipeline_stable_diffusion_xl",
            "stable_diffusion_xl/pipeline_stable_diffusion_xl_img2img",
            "controlnet/pipeline_controlnet_sd_xl",
        )
    ]
    family = family_plan([plan_of_file(path) for path in sources])
    assert [(w.name, w.trigger, w.renamed) for w in family.workflows] == [
        ("img2img", "image", ()),
        ("control_net", "control_net_image", (("image", "control_net_image"),)),
        ("base", None, ()),
    ]


def test_an_argument_a_workflow_computes_from_another_when_that_one_is_given_is_no_trigger():
    """HunyuanVideo Framepack's `last_image_latents` is computed from `last_image` when that is given
    (`if last_image is not None: last_image_latents = self.prepare_image_latents(last_image, ...)`): a call need
    not give it. Its trigger is `image`, which image-to-video, given after it, takes as `image_to_video_image`."""
    sources = [
        installed_diffusers_file(f"pipelines/hunyuan_video/{name}.py")
        for name in (
            "pipeline_hunyuan_video",
            "pipeline_hunyuan_video_framepack",
            "pipeline_hunyuan_video_image2video",
        )
    ]
    family = family_plan([plan_of_file(path) for path in sources])
    assert [(w.name, w.trigger, w.renamed) for w in family.workflows] == [
        ("framepack", "image", ()),
        ("image_to_video", "image_to_video_image", (("image", "image_to_video_image"),)),
        ("base", None, ()),
    ]
