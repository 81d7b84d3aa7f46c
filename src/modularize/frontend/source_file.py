"""Reading a pipeline file from disk: its text, the label recorded in headers, its dotted module name.

    .../site-packages/diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion.py (installed)
        label:  diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion.py (package-relative)
        module: diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion
    <checkout>/src/diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion.py (a git repository)
        label:  src/diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion.py (repository-relative)

The label never depends on the current directory, so converting from anywhere gives the same bytes.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, Location


@dataclass(frozen=True)
class SourceFile:
    path: Path
    text: str
    label: str
    module_name: str | None


def _package_root(path: Path) -> Path:
    """The directory holding the outermost package the file belongs to (the file's own dir if none)."""
    root = path.parent
    while (root / "__init__.py").is_file():
        root = root.parent
    return root


def _repository_root(path: Path) -> Path | None:
    for parent in path.parents:
        if (parent / ".git").exists():
            return parent
    return None


def module_name_of(path: Path) -> str | None:
    root = _package_root(path)
    if root == path.parent:
        return None
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts)


def _installed(path: Path) -> bool:
    return any(part in ("site-packages", "dist-packages") for part in path.parts)


def label_of(path: Path) -> str:
    """Repository-relative inside a git checkout; package-relative for installed packages (`diffusers/...`)."""
    repository = _repository_root(path)
    if repository is not None and not _installed(path):
        return path.relative_to(repository).as_posix()
    root = _package_root(path)
    return path.relative_to(root).as_posix()


def locate_label(label: str, near: Path) -> Path | None:
    """The file a recorded label names: in the repository holding `near`, or in an installed package."""
    candidates = []
    repository = _repository_root(near.resolve() / "__init__.py")
    if repository is not None:
        candidates.append(repository / label)
    top = label.split("/")[0]
    if top.isidentifier():
        # find_spec of a top-level name locates the package without importing it
        spec = importlib.util.find_spec(top)
        if spec is not None and spec.submodule_search_locations:
            candidates.append(Path(next(iter(spec.submodule_search_locations))).parent / label)
    candidates.append(Path.cwd() / label)
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def read_source(path_text: str) -> SourceFile:
    path = Path(path_text)
    if not path.exists():
        raise InputError("no such file", Location(path_text), fix="check the path to the pipeline module")
    if path.is_dir():
        raise InputError("is a directory, not a pipeline module", Location(path_text), fix="pass a pipeline_*.py file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"not UTF-8 text ({error.reason})", Location(path_text)) from None
    except OSError as error:
        raise InputError(f"cannot read: {error.strerror}", Location(path_text)) from None
    resolved = path.resolve()
    return SourceFile(path, text, label_of(resolved), module_name_of(resolved))


def installed_diffusers_file(relative: str) -> Path:
    """A file of the installed diffusers package, found without importing diffusers."""
    spec = importlib.util.find_spec("diffusers")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("diffusers is not installed", fix="pip install 'modularize[verify]'")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise InputError(f"the installed diffusers has no {relative}", Location(str(path)))
    return path
