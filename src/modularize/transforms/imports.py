"""Imports of generated files: resolve the source's relative imports, keep only what a file uses.

Before (in `diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion.py`):

    from ...models import AutoencoderKL, ImageProjection, UNet2DConditionModel

After, out of tree (the default), in a file that uses only `AutoencoderKL`:

    from diffusers.models import AutoencoderKL

and with `--in-tree` (the package lives in `diffusers/modular_pipelines/<model>/`):

    from ...models import AutoencoderKL

Module-level statements copied for the names they define (`if is_torch_xla_available(): import ... as xm;
XLA_AVAILABLE = True`) lose the imports nothing in their new file uses.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

import libcst as cst
import libcst.matchers as m

from ..cst.tree_walk import findall
from ..errors import ConversionError

if TYPE_CHECKING:
    from ..frontend.parse import SourceModule


def dotted(node: cst.BaseExpression | None) -> str:
    if node is None:
        return ""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{dotted(node.value)}.{node.attr.value}"
    raise TypeError(f"not a dotted name: {node!r}")


def absolute_module(node: cst.ImportFrom, source: SourceModule) -> str:
    """The absolute module an import-from of `source` names (`from ...models import x` -> `diffusers.models`).

    The import's location is asked of `source` only to refuse: the first position asked for costs a code
    generation pass over the whole module, which a conversion that never refuses need not run."""
    module_name = source.module_name
    level = len(node.relative)
    target = dotted(node.module)
    if level == 0:
        return target
    if not module_name:
        raise ConversionError(
            "relative import in a file that is not inside a package",
            source.location(node),
            construct=f"from {'.' * level}{target} import ...",
            fix="convert the file from its place in the package tree, or use absolute imports",
        )
    package = module_name.split(".")[:-1]
    if level - 1 > len(package):
        raise ConversionError(
            "relative import goes above the top-level package",
            source.location(node),
            construct=f"from {'.' * level}{target} import ...",
        )
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, target] if target else base)


class _AbsoluteImports(cst.CSTTransformer):
    def __init__(self, source: SourceModule):
        super().__init__()
        self._source = source

    def leave_ImportFrom(self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom) -> cst.ImportFrom:
        if not original_node.relative:
            return updated_node
        module = absolute_module(original_node, self._source)
        return updated_node.with_changes(module=_dotted_node(module), relative=[])


def with_absolute_imports(statement: cst.BaseStatement, source: SourceModule) -> cst.BaseStatement:
    """A module-level statement copied into a generated file imports what it imports from where the source did:

        if is_invisible_watermark_available():                  (in diffusers.pipelines.stable_diffusion_xl.x)
            from .watermark import StableDiffusionXLWatermarker
    ->
        if is_invisible_watermark_available():
            from diffusers.pipelines.stable_diffusion_xl.watermark import StableDiffusionXLWatermarker
    """
    return statement.visit(_AbsoluteImports(source))


def relative_module(absolute: str, importing_module: str) -> tuple[int, str]:
    """`diffusers.models` imported from `diffusers.modular_pipelines.x.encoders` -> (3, "models")."""
    package = importing_module.split(".")[:-1]
    parts = absolute.split(".")
    common = 0
    while common < min(len(package), len(parts)) and package[common] == parts[common]:
        common += 1
    if common == 0:
        return 0, absolute
    return len(package) - common + 1, ".".join(parts[common:])


def import_from(module: str, names: Collection[tuple[str, str | None]], in_tree_module: str | None = None):
    """`from module import a, b as c`, relative to `in_tree_module` when given and inside the same top package;
    a module written relative (`.modular_pipeline`) stays so. Built, not parsed (the parser costs more per line)."""
    level, target = (0, module)
    if module.startswith("."):
        target = module.lstrip(".")
        level = len(module) - len(target)
    elif in_tree_module is not None:
        level, target = relative_module(module, in_tree_module)
    aliases = [
        cst.ImportAlias(
            name=_dotted_node(name), asname=cst.AsName(cst.Name(asname)) if asname and asname != name else None
        )
        for name, asname in names
    ]
    return cst.SimpleStatementLine(
        body=[
            cst.ImportFrom(
                module=_dotted_node(target) if target else None,
                names=aliases,
                relative=[cst.Dot()] * level,
            )
        ]
    )


def plain_import(text: str) -> cst.SimpleStatementLine:
    """`import a.b` (`text` "a.b") or `import a as b` ("a as b"), built as the parser builds it."""
    name, _, asname = text.partition(" as ")
    alias = cst.ImportAlias(name=_dotted_node(name), asname=cst.AsName(cst.Name(asname)) if asname else None)
    return cst.SimpleStatementLine(body=[cst.Import(names=[alias])])


def _dotted_node(text: str) -> cst.Name | cst.Attribute:
    parts = text.split(".")
    node: cst.Name | cst.Attribute = cst.Name(parts[0])
    for part in parts[1:]:
        node = cst.Attribute(value=node, attr=cst.Name(part))
    return node


class _PruneImports(cst.CSTTransformer):
    def __init__(self, used: Collection[str]):
        super().__init__()
        self._used = set(used)

    def _keep(self, alias: cst.ImportAlias) -> bool:
        return _bound_name(alias) in self._used

    def leave_Import(self, original_node, updated_node):
        kept = [alias for alias in updated_node.names if self._keep(alias)]
        if not kept:
            return cst.RemoveFromParent()
        return updated_node.with_changes(names=_without_trailing_comma(kept))

    def leave_ImportFrom(self, original_node, updated_node):
        if isinstance(updated_node.names, cst.ImportStar):
            return updated_node
        kept = [alias for alias in updated_node.names if self._keep(alias)]
        if not kept:
            return cst.RemoveFromParent()
        return updated_node.with_changes(names=_without_trailing_comma(kept))

    def leave_SimpleStatementLine(self, original_node, updated_node):
        return updated_node if updated_node.body else cst.RemoveFromParent()

    def leave_IndentedBlock(self, original_node, updated_node):
        if updated_node.body:
            return updated_node
        return updated_node.with_changes(body=[cst.SimpleStatementLine([cst.Pass()])])


def _without_trailing_comma(aliases: list[cst.ImportAlias]) -> list[cst.ImportAlias]:
    return [*aliases[:-1], aliases[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)]


def _bound_name(alias: cst.ImportAlias) -> str:
    bound = alias.asname.name if alias.asname else alias.name
    name = dotted(bound) if not isinstance(bound, cst.Name) else bound.value
    return name.split(".")[0]


def prune_unused_imports(statement: cst.CSTNode, used: Collection[str]) -> cst.CSTNode:
    """Drop imports inside a copied module-level statement whose names its new file does not use (the statement
    itself when it has none to drop: most copied functions import nothing)."""
    imports = findall(statement, _IMPORT)
    names = [alias for node in imports if not isinstance(node.names, cst.ImportStar) for alias in node.names]
    if all(_bound_name(alias) in used for alias in names):
        return statement
    return statement.visit(_PruneImports(used))


_IMPORT = m.Import() | m.ImportFrom()
