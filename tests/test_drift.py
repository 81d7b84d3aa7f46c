"""`modularize check`: up to date, stale, edited by hand, source missing; `--fix`; the real pre-commit hook."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modularize.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from modularize.output.drift import EDITED, SOURCE_MISSING, STALE, UP_TO_DATE, check_package, find_packages

from .conftest import ROOT, TOY


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@e"
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=check, env=env)


@pytest.fixture
def repo(tmp_path, monkeypatch, cli):
    """A git repository holding the toy pipeline and its generated package; the current directory."""
    git(tmp_path, "init", "-q")
    (tmp_path / "pipelines").mkdir()
    shutil.copy(TOY, tmp_path / "pipelines" / "pipeline_toy.py")
    monkeypatch.chdir(tmp_path)
    assert cli("pipelines/pipeline_toy.py", "-o", "modular_toy", "-q").code == 0
    return tmp_path


def edit_source(repo: Path) -> None:
    source = repo / "pipelines" / "pipeline_toy.py"
    source.write_text(source.read_text().replace("# 2. Encode the prompts", "# 2. Encode prompts"))


def test_an_untouched_package_is_up_to_date_without_regenerating(repo, cli, monkeypatch):
    def no_regeneration(*args, **kwargs):
        raise AssertionError("an unchanged package must not be regenerated")

    monkeypatch.setattr("modularize.output.drift.regenerate", no_regeneration)
    assert find_packages(repo) == [repo / "modular_toy"]
    assert check_package(repo / "modular_toy").state == UP_TO_DATE
    run = cli("check")
    assert run.code == EXIT_OK and "1 generated package(s) up to date" in run.out


def test_a_changed_source_makes_the_package_stale_with_a_diff_and_the_fix(repo, cli):
    edit_source(repo)
    run = cli("check")
    assert run.code == EXIT_FAILED
    assert "-        # 2. Encode the prompts" in run.out and "+        # 2. Encode prompts" in run.out
    assert "modular_toy: stale: pipelines/pipeline_toy.py changed" in run.out
    fix = run.out.strip().splitlines()[-1].split("fix: ")[1]
    assert fix == "modularize convert pipelines/pipeline_toy.py -o modular_toy"
    assert cli(*fix.split()[1:], "-q").code == 0
    assert cli("check").code == EXIT_OK


def test_a_hand_edit_is_named_and_not_regenerated_over_without_force(repo, cli):
    target = repo / "modular_toy" / "decoders.py"
    target.write_text(target.read_text().replace("# 6. Decode", "# 6. Decode (tweaked)"))
    status = check_package(repo / "modular_toy")
    assert status.state == EDITED and status.edited == ("decoders.py",)
    run = cli("check")
    assert run.code == EXIT_FAILED and "edited by hand: decoders.py" in run.out
    assert "modularize convert pipelines/pipeline_toy.py -o modular_toy --force" in run.out
    edit_source(repo)  # stale *and* edited: --fix still leaves the hand edit alone
    assert cli("check", "--fix").code == EXIT_FAILED
    assert "(tweaked)" in target.read_text()
    assert cli("check", "--fix", "--force").code == EXIT_FAILED  # rewrote files: the commit must be redone
    assert "(tweaked)" not in target.read_text()
    assert cli("check").code == EXIT_OK


def test_fix_regenerates_stale_packages(repo, cli):
    edit_source(repo)
    run = cli("check", "--fix")
    assert run.code == EXIT_FAILED and "modular_toy: regenerated from pipelines/pipeline_toy.py" in run.out
    assert "# 2. Encode prompts" in (repo / "modular_toy" / "encoders.py").read_text()
    assert cli("check").code == EXIT_OK


def test_a_missing_source_is_its_own_error(repo, cli):
    (repo / "pipelines" / "pipeline_toy.py").unlink()
    assert check_package(repo / "modular_toy").state == SOURCE_MISSING
    run = cli("check")
    assert run.code == EXIT_FAILED
    assert "source missing: pipelines/pipeline_toy.py (recorded in its headers) does not exist" in run.out


def test_changed_paths_select_the_packages_they_concern(repo, cli):
    shutil.copytree(repo / "modular_toy", repo / "modular_other")
    (repo / "unrelated.py").write_text("x = 1\n")
    edit_source(repo)
    assert cli("check", "unrelated.py").code == EXIT_OK  # nothing generated is concerned
    run = cli("check", "modular_other/denoise.py")
    assert run.code == EXIT_FAILED and "modular_other: stale" in run.out and "modular_toy:" not in run.out
    run = cli("check", "pipelines/pipeline_toy.py")
    assert "modular_other: stale" in run.out and "modular_toy: stale" in run.out
    assert cli("check", "missing.py").code == EXIT_USAGE


def test_a_formatter_or_generator_change_reads_as_stale(repo, cli):
    for path in (repo / "modular_toy").glob("*.py"):
        text = path.read_text().replace("ruff 0.17.6", "ruff 0.16.0")
        path.write_text(text)
    status = check_package(repo / "modular_toy")
    assert status.state == STALE
    assert "-# modularize-generator: modularize 0.1.0; ruff 0.16.0" in status.diff


def test_check_imports_neither_torch_nor_diffusers_nor_the_converter(repo):
    code = (
        "import sys; from modularize.cli import main; code = main(['check', '-q']);"
        "print(code, sorted(m for m in ('torch', 'diffusers', 'libcst', 'ruff') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, check=True)
    assert result.stdout.strip() == "0 []"


def _hook_repository(tmp_path: Path) -> tuple[Path, str]:
    """This project's working tree as a git repository pre-commit can install hooks from."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy(ROOT / name, hooks / name)
    shutil.copytree(ROOT / "src", hooks / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    git(hooks, "init", "-q")
    git(hooks, "add", "-A")
    git(hooks, "commit", "-qm", "hooks")
    return hooks, git(hooks, "rev-parse", "HEAD").stdout.strip()


@pytest.mark.slow
def test_the_pre_commit_hook_catches_drift_and_hand_edits(repo, tmp_path_factory, cli):
    hooks, rev = _hook_repository(tmp_path_factory.mktemp("hook_repo"))
    (repo / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hooks}\n    rev: {rev}\n    hooks:\n      - id: modularize-check\n"
    )
    pre_commit = str(Path(sys.executable).parent / "pre-commit")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path_factory.mktemp("pre_commit_home"))}
    subprocess.run([pre_commit, "install"], cwd=repo, check=True, capture_output=True, env=env)

    identity = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }

    def commit(message: str) -> tuple[int, str]:
        git(repo, "add", "-A")
        done = subprocess.run(
            ["git", "commit", "-qm", message], cwd=repo, capture_output=True, text=True, env={**env, **identity}
        )
        return done.returncode, done.stdout + done.stderr  # pre-commit reports on either stream

    code, output = commit("pipeline and its modular package")
    assert code == 0 and "modularize check" in output and "Passed" in output, output

    edit_source(repo)
    code, output = commit("edit the standard pipeline only")
    assert code != 0 and "Failed" in output
    assert "modular_toy: stale" in output
    assert "fix: modularize convert pipelines/pipeline_toy.py -o modular_toy" in output

    assert cli("convert", "pipelines/pipeline_toy.py", "-o", "modular_toy", "-q").code == 0
    code, output = commit("regenerate")
    assert code == 0, output

    target = repo / "modular_toy" / "denoise.py"
    target.write_text(target.read_text().replace("# 5. Denoising loop", "# 5. Denoising loop, tuned"))
    code, output = commit("hand edit")
    assert code != 0 and "edited by hand: denoise.py" in output

    assert cli("convert", "pipelines/pipeline_toy.py", "-o", "modular_toy", "--force", "-q").code == 0
    # the edit never got committed, so regenerating leaves nothing to commit: run the hook over everything instead
    git(repo, "add", "-A")
    assert git(repo, "status", "--porcelain").stdout == ""
    run = subprocess.run([pre_commit, "run", "--all-files"], cwd=repo, capture_output=True, text=True, env=env)
    assert run.returncode == 0 and "Passed" in run.stdout, run.stdout
