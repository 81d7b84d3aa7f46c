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
import os
import stat
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


# The largest Python module of diffusers 0.42.1 is 327 KB (its largest pipeline module 112 KB); conversion time grows
# faster than the size, so a larger input is refused rather than converted for minutes.
MAX_SOURCE_BYTES = 1024 * 1024


def read_source_text(path_text: str) -> str:
    """The text of a regular file of at most `MAX_SOURCE_BYTES`, read once; anything else (a directory, a FIFO, a
    device such as /dev/zero, a larger file) is refused at once with one line."""
    location = Location(path_text)
    try:
        # non-blocking: opening a FIFO with no writer must not wait; a regular file reads the same either way
        descriptor = os.open(path_text, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError("no such file", location, fix="check the path to the pipeline module") from None
    except IsADirectoryError:
        raise InputError("is a directory, not a pipeline module", location, fix="pass a pipeline_*.py file") from None
    except OSError as error:
        raise InputError(f"cannot read: {error.strerror}", location) from None
    try:
        status = os.fstat(descriptor)
        if stat.S_ISDIR(status.st_mode):
            raise InputError("is a directory, not a pipeline module", location, fix="pass a pipeline_*.py file")
        if not stat.S_ISREG(status.st_mode):
            raise InputError(
                f"not a regular file ({_file_kind(status.st_mode)})", location, fix="pass a pipeline_*.py file"
            )
        if status.st_size > MAX_SOURCE_BYTES:
            raise InputError(_too_large(status.st_size), location, fix="pass a single pipeline module")
        chunks, size = [], 0
        while size <= MAX_SOURCE_BYTES:
            chunk = os.read(descriptor, MAX_SOURCE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    except OSError as error:
        raise InputError(f"cannot read: {error.strerror}", location) from None
    finally:
        os.close(descriptor)
    if len(data) > MAX_SOURCE_BYTES:  # it grew while being read
        raise InputError(_too_large(len(data)), location, fix="pass a single pipeline module")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"not UTF-8 text ({error.reason})", location) from None


def _too_large(size: int) -> str:
    return f"too large for a pipeline module ({size:,} bytes; the limit is {MAX_SOURCE_BYTES:,})"


def _file_kind(mode: int) -> str:
    kinds = [
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((kind for test, kind in kinds if test(mode)), "not a file")


def read_source(path_text: str) -> SourceFile:
    text = read_source_text(path_text)
    resolved = Path(path_text).resolve()
    return SourceFile(Path(path_text), text, label_of(resolved), module_name_of(resolved))


def installed_diffusers_file(relative: str) -> Path:
    """A file of the installed diffusers package, found without importing diffusers."""
    spec = importlib.util.find_spec("diffusers")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("diffusers is not installed", fix="pip install 'modularize[verify]'")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise InputError(f"the installed diffusers has no {relative}", Location(str(path)))
    return path


def module_reader(near: Path):
    """`read(module_name) -> SourceFile | None`: the module of the package tree holding `near`, read from disk.

    A pipeline built of other pipelines (`self.prior_pipe = KandinskyV22PriorPipeline(...)`) is converted with the
    sources of those pipelines, found by their dotted module names in the same tree:

        read = module_reader(Path(".../diffusers/pipelines/kandinsky2_2/pipeline_kandinsky2_2_combined.py"))
        read("diffusers.pipelines.kandinsky2_2.pipeline_kandinsky2_2_prior")  # -> SourceFile(...) of that file
    """
    root = _package_root(near.resolve())

    def read(module_name: str) -> SourceFile | None:
        path = root.joinpath(*module_name.split(".")).with_suffix(".py")
        if not path.is_file():
            return None
        return read_source(str(path))

    return read
