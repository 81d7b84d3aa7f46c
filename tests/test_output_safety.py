"""Never lose a file: where a package may be written, exclusive and crash-safe writes, interrupted-write recovery.

Every refusal is exit 2 with one line, and the filesystem outside the output path is left exactly as it was.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modularize.cli import main
from modularize.emit.layout import is_complete
from modularize.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from modularize.output.write import leftovers

from .conftest import TOY
from .test_cli import assert_one_line_error


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every path under `root` with its content (files) or link target (symlinks)."""
    state: dict[str, bytes | str] = {}
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories + files:
            path = Path(directory, name)
            key = str(path.relative_to(root))
            if path.is_symlink():
                state[key] = "-> " + os.readlink(path)
            elif path.is_file():
                state[key] = path.read_bytes()
            else:
                state[key] = "dir"
    return state


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A user's repository: their pipeline in `pipelines/`, the current directory."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "pipelines").mkdir()
    shutil.copy(TOY, tmp_path / "pipelines" / "pipeline_toy.py")
    (tmp_path / "pipelines" / "notes.md").write_text("mine")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused_and_unchanged(cli, workspace: Path, *args, fragment: str) -> None:
    before = snapshot(workspace)
    run = cli(*args)
    assert run.code == EXIT_USAGE, run
    assert_one_line_error(run, fragment)
    assert snapshot(workspace) == before


@pytest.mark.parametrize(
    ("output", "fragment"),
    [
        ("pipelines/pipeline_toy.py", "is the source file"),
        ("pipelines", "a directory holding the source file"),
        (".", "current directory"),
        ("..", "current directory"),
        ("/", "filesystem root"),
        ("", "empty output path"),
        ("missing/parent/modular_toy", "does not exist"),
    ],
)
def test_output_paths_that_would_lose_files_are_refused(cli, workspace, output, fragment):
    refused_and_unchanged(cli, workspace, "pipelines/pipeline_toy.py", "-o", output, "--force", fragment=fragment)


def test_the_package_root_holding_the_source_is_refused(cli, tmp_path, monkeypatch):
    root = tmp_path / "repo"
    (root / "src" / "mine").mkdir(parents=True)
    shutil.copy(TOY, root / "src" / "mine" / "pipeline_toy.py")
    monkeypatch.chdir(tmp_path)
    refused_and_unchanged(cli, tmp_path, "repo/src/mine/pipeline_toy.py", "-o", "repo", "--force", fragment="source")


def test_a_dangling_symlink_is_refused_and_nothing_is_created(cli, workspace):
    target = workspace / "nonexistent" / "target"
    (workspace / "dangling").symlink_to(target)
    refused_and_unchanged(cli, workspace, "pipelines/pipeline_toy.py", "-o", "dangling", fragment="dangling symlink")
    assert not (workspace / "nonexistent").exists()


def test_a_symlink_loop_is_refused(cli, workspace):
    (workspace / "loop_a").symlink_to(workspace / "loop_b")
    (workspace / "loop_b").symlink_to(workspace / "loop_a")
    refused_and_unchanged(cli, workspace, "pipelines/pipeline_toy.py", "-o", "loop_a", fragment="symlink loop")
    refused_and_unchanged(cli, workspace, "pipelines/pipeline_toy.py", "-o", "loop_a/x", fragment="symlink loop")


def test_a_symlink_leading_outside_its_directory_is_refused(cli, workspace, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (workspace / "link").symlink_to(elsewhere)
    refused_and_unchanged(cli, workspace, "pipelines/pipeline_toy.py", "-o", "link", fragment="leading outside")


def test_a_symlink_to_a_sibling_directory_writes_through_it(cli, workspace):
    (workspace / "real").mkdir()
    (workspace / "link").symlink_to(workspace / "real")
    assert cli("pipelines/pipeline_toy.py", "-o", "link", "-q").code == EXIT_OK
    assert (workspace / "link").is_symlink() and (workspace / "real" / "denoise.py").is_file()


def test_a_parent_that_cannot_be_written_is_refused(cli, workspace, monkeypatch):
    (workspace / "locked").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if "locked" in str(path) else real_access(path, mode))
    output = "locked/modular_toy"
    refused_and_unchanged(cli, workspace, "pipelines/pipeline_toy.py", "-o", output, fragment="permission denied")


@pytest.mark.parametrize("jobs", ["0", "-1", "two"])
def test_survey_jobs_must_be_a_positive_number(workspace, capsys, jobs):
    with pytest.raises(SystemExit) as done:
        main(["survey", "pipelines", "-j", jobs])
    assert done.value.code == EXIT_USAGE
    assert "-j/--jobs" in capsys.readouterr().err


def test_generated_directories_follow_the_umask(cli, workspace):
    previous = os.umask(0o022)
    try:
        assert cli("pipelines/pipeline_toy.py", "-o", "modular_toy", "-q").code == EXIT_OK
    finally:
        os.umask(previous)
    assert (workspace / "modular_toy").stat().st_mode & 0o777 == 0o755


def test_force_names_the_foreign_files_it_discards(cli, workspace):
    assert cli("pipelines/pipeline_toy.py", "-o", "modular_toy", "-q").code == EXIT_OK
    (workspace / "modular_toy" / "my_notes.txt").write_text("mine")
    run = cli("pipelines/pipeline_toy.py", "-o", "modular_toy", "--force", "-q")
    assert run.code == EXIT_OK and "discarded my_notes.txt" in run.err


def test_check_reports_foreign_files_and_fix_force_names_what_it_discards(cli, workspace):
    assert cli("pipelines/pipeline_toy.py", "-o", "modular_toy", "-q").code == EXIT_OK
    (workspace / "modular_toy" / "my_notes.txt").write_text("mine")
    run = cli("check")
    assert run.code == EXIT_FAILED and "did not generate: my_notes.txt" in run.out
    fix = cli("check", "--fix")  # a foreign file is never discarded without --force: reported, exit 1, not 2
    assert fix.code == EXIT_FAILED and (workspace / "modular_toy" / "my_notes.txt").exists()
    forced = cli("check", "--fix", "--force")
    assert "discarded my_notes.txt" in forced.out and not (workspace / "modular_toy" / "my_notes.txt").exists()
    assert cli("check").code == EXIT_OK


def test_a_deleted_file_and_a_changed_source_read_differently(cli, workspace):
    assert cli("pipelines/pipeline_toy.py", "-o", "modular_toy", "-q").code == EXIT_OK
    (workspace / "modular_toy" / "decoders.py").unlink()
    run = cli("check")
    assert run.code == EXIT_FAILED and "missing or changed: decoders.py" in run.out
    assert "pipeline_toy.py changed" not in run.out


def complete_package(directory: Path) -> bool:
    names = {path.name for path in directory.iterdir()} if directory.is_dir() else set()
    return is_complete(names - {"__pycache__"})


def test_check_finds_an_interrupted_write_and_fix_restores_it(cli, workspace):
    """The state a kill between the two renames of the fallback swap leaves: no package, a retired copy."""
    assert cli("pipelines/pipeline_toy.py", "-o", "modular_toy", "-q").code == EXIT_OK
    os.rename(workspace / "modular_toy", workspace / ".modular_toy.modularize-old-abc123")
    (workspace / ".modular_toy.modularize-new-def456").mkdir()  # a half-written staging directory
    run = cli("check")
    assert run.code == EXIT_FAILED and "modular_toy: interrupted write" in run.out
    fixed = cli("check", "--fix")
    assert "restored the package" in fixed.out
    assert complete_package(workspace / "modular_toy") and not leftovers(workspace / "modular_toy")
    assert cli("check").code == EXIT_OK


def test_convert_recovers_leftovers_of_an_interrupted_write(cli, workspace):
    assert cli("pipelines/pipeline_toy.py", "-o", "modular_toy", "-q").code == EXIT_OK
    (workspace / ".modular_toy.modularize-new-def456").mkdir()
    run = cli("pipelines/pipeline_toy.py", "-o", "modular_toy", "-q")
    assert run.code == EXIT_OK and "interrupted" in run.err
    assert not leftovers(workspace / "modular_toy")


def _convert_process(workspace: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "modularize.cli", "pipelines/pipeline_toy.py", "-o", "modular_toy", "-q"]
    return subprocess.Popen(
        [*command, *extra], cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_concurrent_writers_all_succeed_and_leave_one_complete_package(workspace):
    writers = [_convert_process(workspace) for _ in range(4)]
    results = [(writer.wait(timeout=120), writer.stderr.read()) for writer in writers]
    assert all(code == EXIT_OK for code, _ in results), results
    assert complete_package(workspace / "modular_toy") and not leftovers(workspace / "modular_toy")
    assert sorted(p.name for p in workspace.iterdir()) == [".git", "modular_toy", "pipelines"]


@pytest.mark.slow
def test_thirty_kills_during_a_write_never_leave_a_broken_package(cli, workspace):
    assert cli("pipelines/pipeline_toy.py", "-o", "modular_toy", "-q").code == EXIT_OK
    source = workspace / "pipelines" / "pipeline_toy.py"
    pristine = source.read_text()
    randomness = random.Random(1234)
    started = time.perf_counter()
    writer = _convert_process(workspace, "--force")
    writer.wait(timeout=120)
    full = time.perf_counter() - started  # one whole write, interpreter start-up included
    for attempt in range(30):
        # alternate between two sources, so a kill lands between an old and a new package
        source.write_text(pristine.replace("# 2. Encode the prompts", f"# 2. Encode the prompts ({attempt % 2})"))
        writer = _convert_process(workspace, "--force")
        time.sleep(randomness.uniform(0.3 * full, 1.1 * full))
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
        package = workspace / "modular_toy"
        if complete_package(package):
            run = cli("check", "--fix")
            assert run.code in (EXIT_OK, EXIT_FAILED), run
        else:
            run = cli("check")
            assert run.code == EXIT_FAILED and "interrupted write" in run.out, (attempt, run)
            assert cli("check", "--fix").code == EXIT_FAILED
        assert complete_package(package), attempt
        assert not leftovers(package), attempt
        assert source.is_file() and (workspace / "pipelines" / "notes.md").read_text() == "mine"


def test_without_an_atomic_exchange_the_two_rename_swap_still_replaces_the_package(cli, workspace, monkeypatch):
    monkeypatch.setattr("modularize.output.write._exchange", lambda first, second: False)
    assert cli("pipelines/pipeline_toy.py", "-o", "modular_toy", "-q").code == EXIT_OK
    (workspace / "modular_toy" / "stray.txt").write_text("x")
    assert cli("pipelines/pipeline_toy.py", "-o", "modular_toy", "-q", "--force").code == EXIT_OK
    assert complete_package(workspace / "modular_toy") and not leftovers(workspace / "modular_toy")
    assert not (workspace / "modular_toy" / "stray.txt").exists()
