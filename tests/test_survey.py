"""`modularize survey`: every pipeline class converted, refused with a location, or recorded as crashed."""

import json

import pytest

from modularize.cli import main
from modularize.commands.survey import CONVERTED, CRASHED, REFUSED, reason_group
from modularize.frontend.source_file import installed_diffusers_file

from .conftest import FIXTURES


def by_class(report):
    return {(p["file"], p["class"]): p for p in report["pipelines"]}


def test_surveying_the_fixtures_reports_each_class(cli):
    run = cli("survey", FIXTURES, "--json", "-", "-j", "2")
    assert run.code == 0
    report = json.loads(run.out)
    entries = by_class(report)
    toy = entries[("pipelines/pipeline_toy.py", "ToyTextToImagePipeline")]
    assert (toy["status"], toy["guidance"], toy["blocks"]) == (CONVERTED, "batched-cfg", 6)
    assert toy["seconds"] > 0 and set(toy) >= {"file", "class", "status", "reason", "line", "guidance", "blocks"}
    first = entries[("pipelines/pipeline_two_classes.py", "FirstToyPipeline")]
    assert (first["status"], first["guidance"]) == (CONVERTED, "none")
    second = entries[("pipelines/pipeline_two_classes.py", "SecondToyPipeline")]
    assert second["status"] == REFUSED and "no denoising loop" in second["reason"] and second["line"] > 0
    passes = entries[("bad/pipeline_separate_passes.py", "SeparatePassesPipeline")]
    assert (passes["status"], passes["line"]) == (REFUSED, 23)
    assert "uncond = self.transformer" in passes["construct"]
    # every Python file is surveyed, whatever its name: a syntax error is a located refusal, a module without a
    # pipeline class (no_pipeline.py) gives no row
    broken = entries[("bad/syntax_error.py", "")]
    assert broken["status"] == REFUSED and broken["reason"].startswith("syntax error") and broken["line"] > 0
    assert {p["file"] for p in report["pipelines"]} == {
        "pipelines/pipeline_toy.py",
        "pipelines/pipeline_two_classes.py",
        "pipelines/pipeline_captioned_img2img.py",
        "pipelines/pipeline_global_noise.py",
        "bad/pipeline_separate_passes.py",
        "bad/syntax_error.py",
    }
    summary = report["summary"]
    assert (summary["files"], summary["pipelines"], summary["converted"], summary["refused"], summary["crashed"]) == (
        7,
        7,
        4,
        3,
        0,
    )
    assert summary["guidance_patterns"] == {"batched-cfg": 1, "none": 3}
    assert {item["count"] for item in summary["refusal_reasons"]} == {1}


def test_a_pipeline_in_a_file_of_any_name_is_surveyed(cli, tmp_path):
    """Users' own pipelines are rarely named `pipeline_*.py`."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "my_toy.py").write_text((FIXTURES / "pipelines" / "pipeline_toy.py").read_text())
    (tmp_path / "mine" / "notes.py").write_text("VALUE = 1\n")
    run = cli("survey", tmp_path, "--json", "-", "-j", "1")
    report = json.loads(run.out)
    assert run.code == 0 and report["summary"]["files"] == 1
    assert by_class(report)[("mine/my_toy.py", "ToyTextToImagePipeline")]["status"] == CONVERTED


def test_markdown_report_and_refusal_groups(cli, tmp_path):
    target = tmp_path / "survey.md"
    assert cli("survey", FIXTURES, "--markdown", target, "-j", "1").code == 0
    text = target.read_text()
    assert "| bad/pipeline_separate_passes.py | SeparatePassesPipeline | refused | 23 |" in text
    assert "## Refusal reasons" in text
    assert reason_group("`add_text_embeds` is batched for CFG, see `x`") == "`X` is batched for CFG, see `X`"


def test_a_crash_is_logged_and_the_survey_goes_on(cli, tmp_path, monkeypatch):
    import modularize.convert

    original = modularize.convert.analyze  # (what the survey's `plan_of` analyzes each class with)

    def flaky(source, class_name=None, sub_pipelines=()):
        if class_name == "FirstToyPipeline":
            raise KeyError("boom")
        return original(source, class_name, sub_pipelines)

    monkeypatch.setattr(modularize.convert, "analyze", flaky)
    log = tmp_path / "crashes.log"
    run = cli("survey", FIXTURES / "pipelines", "--json", "-", "-j", "1", "--log", log)
    assert run.code == 1  # something crashed
    entries = by_class(json.loads(run.out))
    crashed = entries[("pipeline_two_classes.py", "FirstToyPipeline")]
    assert crashed["status"] == CRASHED and crashed["reason"] == "KeyError: 'boom'"
    assert entries[("pipeline_toy.py", "ToyTextToImagePipeline")]["status"] == CONVERTED
    assert "KeyError: 'boom'" in log.read_text() and "== pipeline_two_classes.py FirstToyPipeline" in log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["2"])
def test_the_installed_diffusers_pipelines_never_crash_and_every_refusal_is_located(tmp_path, capsys, jobs):
    pipelines = installed_diffusers_file("pipelines/__init__.py").parent
    code = main(["survey", str(pipelines), "--json", str(tmp_path / "survey.json"), "-j", jobs, "--lint"])
    assert code == 0
    report = json.loads((tmp_path / "survey.json").read_text())
    entries = report["pipelines"]
    assert report["summary"]["pipelines"] > 250 and report["summary"]["crashed"] == 0
    # every generated package is clean under diffusers' own ruff selection
    lint = report["summary"]["lint"]
    assert lint["packages"] == report["summary"]["converted"] == lint["clean"], [
        (p["class"], p["lint"]) for p in entries if p.get("lint")
    ]
    refused = [p for p in entries if p["status"] == REFUSED]
    assert refused and all(p["file"] and p["line"] > 0 and p["reason"] for p in refused)
    converted = {p["class"] for p in entries if p["status"] == CONVERTED}
    assert "StableDiffusionPipeline" in converted
    counts = [item["count"] for item in report["summary"]["refusal_reasons"]]
    assert counts == sorted(counts, reverse=True) and sum(counts) == len(refused)


def test_lint_names_each_packages_problems_with_file_and_line(tmp_path):
    from modularize.output.lint import lint_packages

    (tmp_path / "clean").mkdir()
    (tmp_path / "clean" / "a.py").write_text("x = 1\n")
    (tmp_path / "unclean").mkdir()
    (tmp_path / "unclean" / "b.py").write_text("import os\n\n\ndef f():\n    y = 2\n")
    found = lint_packages(tmp_path)
    assert set(found) == {"unclean"}
    assert found["unclean"][0].startswith("b.py:1:8: F401") and any("F841" in p for p in found["unclean"])


@pytest.mark.slow
def test_survey_verify_adds_the_equivalence_of_pipelines_with_tiny_components(tmp_path):
    stable_diffusion = installed_diffusers_file("pipelines/stable_diffusion/__init__.py").parent
    target = tmp_path / "survey.json"
    assert main(["survey", str(stable_diffusion), "--verify", "--json", str(target), "-j", "2"]) == 0
    report = json.loads(target.read_text())
    verified = [p for p in report["pipelines"] if "equivalence" in p]
    # every converted class, the depth-to-image, image-variation and x4 upscaling ones on components built by
    # component class
    assert sorted(p["class"] for p in verified) == [
        "StableDiffusionDepth2ImgPipeline",
        "StableDiffusionImageVariationPipeline",
        "StableDiffusionImg2ImgPipeline",
        "StableDiffusionInpaintPipeline",
        "StableDiffusionInstructPix2PixPipeline",
        "StableDiffusionPipeline",
        "StableDiffusionUpscalePipeline",
    ]
    assert all(p["equivalence"]["ok"] and p["equivalence"]["bitwise"] for p in verified)
    assert all(p["equivalence"]["status"] == "verified" for p in verified)
    assert report["summary"]["verified"] == report["summary"]["verified_ok"] == 7
    assert report["summary"]["verification"] == {"verified": 7}


def test_survey_verify_table_gives_every_converted_class_its_verdict():
    from modularize.commands.survey import Entry, summary, table

    verdicts = {
        "APipeline": {"status": "verified", "ok": True, "runs": 10, "bitwise": True},
        "BPipeline": {"status": "missing", "ok": False, "missing": ["FooModel"]},
        "CPipeline": {
            "status": "differs",
            "ok": False,
            "error": "default (plain): generated pipeline failed: TypeError: where() received ...:\n * (Tensor condition)",
        },
        "DPipeline": {"status": "error", "ok": False, "error": "nothing compared"},
    }
    entries = [Entry(f"{name}.py", name, CONVERTED, equivalence=verdict) for name, verdict in verdicts.items()]
    entries.append(Entry("e.py", "EPipeline", REFUSED, "no guidance"))
    shown = table(summary(entries, 5, 12.0), entries).splitlines()
    assert (
        "verify: 1 of 4 converted verified bitwise (25.0%), 1 differ, 1 missing a component class, 1 setup errors"
        in shown
    )
    rows = [line.split() for line in shown if line.startswith("  ") and line.split()[1].endswith("Pipeline")]
    assert [(row[0], row[1]) for row in rows] == [
        ("verified", "APipeline"),
        ("missing", "BPipeline"),
        ("differs", "CPipeline"),
        ("error", "DPipeline"),
    ]
    assert shown[-3].endswith("missing component class: FooModel")
    assert shown[-2].endswith("generated pipeline failed: TypeError: where() received ...:")  # one line per class
