"""The command line: errors are one line naming file (and line), exit non-zero and write nothing."""

import shutil

import pytest

from modularize.cli import main
from modularize.errors import EXIT_FAILED, EXIT_INTERNAL, EXIT_REFUSED, EXIT_USAGE

from .conftest import FIXTURES, TOY

BAD = FIXTURES / "bad"


def assert_one_line_error(run, *fragments):
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("modularize: error: ")
    assert "Traceback" not in run.err
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_lists_commands_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for word in ("convert", "plan", "verify", "demo", "exit codes"):
        assert word in out


def test_missing_file(cli, tmp_path):
    run = cli(tmp_path / "nope.py", "-o", tmp_path / "out")
    assert run.code == EXIT_USAGE
    assert_one_line_error(run, "nope.py", "no such file")
    assert not (tmp_path / "out").exists()


def test_syntax_error_names_file_and_line(cli, tmp_path):
    run = cli(BAD / "syntax_error.py", "-o", tmp_path / "out")
    assert run.code == EXIT_USAGE
    assert_one_line_error(run, "syntax_error.py:9:", "syntax error")
    assert not (tmp_path / "out").exists()


def test_module_without_a_pipeline_class(cli, tmp_path):
    run = cli(BAD / "no_pipeline.py", "-o", tmp_path / "out")
    assert run.code == EXIT_USAGE
    assert_one_line_error(run, "no_pipeline.py", "no pipeline class")
    assert not (tmp_path / "out").exists()


def test_several_pipeline_classes_need_class(cli, tmp_path):
    two = FIXTURES / "pipelines" / "pipeline_two_classes.py"
    run = cli(two, "-o", tmp_path / "out")
    assert run.code == EXIT_USAGE
    assert_one_line_error(run, "pipeline_two_classes.py:", "several pipeline classes", "--class")
    assert cli(two, "-o", tmp_path / "out", "--class", "FirstToyPipeline", "-q").code == 0
    assert (tmp_path / "out" / "denoise.py").exists()
    run = cli(two, "-o", tmp_path / "other", "--class", "Missing")
    assert_one_line_error(run, "FirstToyPipeline, SecondToyPipeline")


def test_unsupported_construct_is_refused_with_location(cli, tmp_path):
    run = cli(BAD / "pipeline_separate_passes.py", "-o", tmp_path / "out")
    assert run.code == EXIT_REFUSED
    assert_one_line_error(run, "pipeline_separate_passes.py:23:", "construct: uncond = self.transformer(")
    assert not (tmp_path / "out").exists()


def test_hand_edited_output_is_refused_unless_forced(cli, tmp_path):
    out = tmp_path / "modular_toy"
    assert cli(TOY, "-o", out, "-q").code == 0
    assert cli(TOY, "-o", out, "-q").code == 0  # regenerating over an untouched package is fine
    edited = (out / "denoise.py").read_text().replace("# 5. Denoising loop", "# my own comment")
    (out / "denoise.py").write_text(edited)
    run = cli(TOY, "-o", out)
    assert run.code == EXIT_USAGE
    assert_one_line_error(run, "denoise.py", "edited by hand", "--force")
    assert (out / "denoise.py").read_text() == edited  # nothing was touched
    assert cli(TOY, "-o", out, "--force", "-q").code == 0
    assert "# my own comment" not in (out / "denoise.py").read_text()


def test_foreign_files_in_the_output_are_refused(cli, tmp_path):
    out = tmp_path / "modular_toy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    run = cli(TOY, "-o", out)
    assert run.code == EXIT_USAGE
    assert_one_line_error(run, "notes.txt", "did not generate")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_another_sources_package_is_not_replaced_unless_forced(cli, tmp_path):
    two = FIXTURES / "pipelines" / "pipeline_two_classes.py"
    out = tmp_path / "modular_toy"
    assert cli(TOY, "-o", out, "-q").code == 0
    before = {p.name: p.read_text() for p in out.iterdir()}
    run = cli(two, "-o", out, "--class", "FirstToyPipeline")
    assert run.code == EXIT_USAGE
    assert_one_line_error(run, "generated from", "pipeline_toy.py", "(FirstToyPipeline)", "--force")
    assert {p.name: p.read_text() for p in out.iterdir()} == before  # nothing was touched
    assert cli(two, "-o", out, "--class", "FirstToyPipeline", "--force", "-q").code == 0
    assert cli(two, "-o", out, "--class", "FirstToyPipeline", "-q").code == 0  # its own package is replaced


def test_check_and_diff_report_a_stale_package_with_the_fix(cli, tmp_path):
    source = tmp_path / "pipeline_toy.py"
    shutil.copy(TOY, source)
    out = tmp_path / "modular_toy"
    assert cli(source, "-o", out, "-q").code == 0
    up_to_date = cli(source, "-o", out, "--check")
    assert up_to_date.code == 0 and "up to date" in up_to_date.out
    source.write_text(source.read_text().replace("# 2. Encode the prompts", "# 2. Encode prompts"))
    stale = cli(source, "-o", out, "--check")
    assert stale.code == EXIT_FAILED
    assert "changed encoders.py" in stale.err and f"modularize convert {source} -o {out}" in stale.err
    diff = cli(source, "-o", out, "--diff")
    assert diff.code == EXIT_FAILED
    assert "-        # 2. Encode the prompts" in diff.out and "+        # 2. Encode prompts" in diff.out


def test_convert_is_the_default_command(cli, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(TOY, "-o", a, "-q").code == 0
    assert cli("convert", TOY, "-o", b, "-q").code == 0
    for path in a.iterdir():
        assert path.read_text() == (b / path.name).read_text()


def test_verify_reports_a_bad_components_spec(cli, toy_package):
    run = cli("verify", toy_package, "--components", "no_such_module:make")
    assert run.code == EXIT_USAGE
    assert_one_line_error(run, "no_such_module")


def test_components_without_emitted_tests_is_a_usage_error_and_writes_nothing(cli, tmp_path):
    run = cli(TOY, "-o", tmp_path / "out", "--components", "mine:make")
    assert run.code == EXIT_USAGE
    assert_one_line_error(run, "--emit-tests")
    assert not (tmp_path / "out").exists()


def test_an_internal_error_is_one_line_with_the_traceback_saved(cli, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("modularize.convert.emit_package", broken)
    run = cli(TOY, "-o", tmp_path / "out")
    assert run.code == EXIT_INTERNAL
    line = run.err.strip()
    assert line.startswith("modularize: internal error: RuntimeError: boom (traceback in ") and "\n" not in line
    log = line.split("traceback in ")[1].split(";")[0]
    assert "RuntimeError: boom" in open(log).read()
    assert not (tmp_path / "out").exists()
