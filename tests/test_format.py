"""The format pass: pinned `ruff format`, diffusers' style, immune to the user's ruff configuration."""

import os

import pytest

from modularize.emit.format import FormatError, format_files, format_python

UNFORMATTED = "import os\nx = {  'a':1 }\ndef f( a ):\n  return a\n"
FORMATTED = 'import os\n\nx = {"a": 1}\n\n\ndef f(a):\n    return a\n'
LONG_CALL = "result = function(" + ", ".join(f"argument_{i}" for i in range(9)) + ")\n"  # 125 columns


def test_format_python_gives_diffusers_style():
    assert format_python(UNFORMATTED) == FORMATTED
    assert format_python(FORMATTED) == FORMATTED
    assert format_python(LONG_CALL) == f"result = function(\n    {LONG_CALL[18:-2]}\n)\n"  # over 119 columns
    assert format_python(LONG_CALL[:-15] + ")\n") == LONG_CALL[:-15] + ")\n"  # 112 columns: one line


def test_format_files_formats_each_file_as_format_python_does():
    texts = {"denoise.py": UNFORMATTED, "sub/__init__.py": LONG_CALL, "empty.py": ""}
    assert format_files(texts) == {name: format_python(text) for name, text in texts.items()}
    assert format_files({}) == {}


def test_a_users_ruff_configuration_changes_no_byte(tmp_path, monkeypatch):
    expected = format_files({"a.py": UNFORMATTED, "b.py": LONG_CALL})
    config = '[tool.ruff]\nline-length = 40\n[tool.ruff.format]\nquote-style = "single"\nindent-style = "tab"\n'
    (tmp_path / "pyproject.toml").write_text(config)
    (tmp_path / "ruff.toml").write_text(config.replace("[tool.ruff]\n", "").replace("tool.ruff.", ""))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUFF_LINE_LENGTH", "40")
    before = sorted(os.listdir(tmp_path))
    assert format_files({"a.py": UNFORMATTED, "b.py": LONG_CALL}) == expected
    assert format_python(UNFORMATTED) == expected["a.py"]
    assert sorted(os.listdir(tmp_path)) == before  # no .ruff_cache, nothing else written here


def test_invalid_code_is_an_error_not_a_silent_pass():
    with pytest.raises(FormatError, match="ruff format failed"):
        format_files({"bad.py": "def f(:\n"})
    with pytest.raises(FormatError):
        format_python("def f(:\n")
