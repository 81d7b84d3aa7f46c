"""Read parameter descriptions out of a Google-style `Args:` docstring section.

    Args:
        prompt (`str` or `list[str]`, *optional*):
            The prompt or prompts to guide image generation.

gives `{"prompt": "The prompt or prompts to guide image generation."}`. Works on docstring prose only, never on
Python source.
"""

from __future__ import annotations

_SECTION_ENDS = ("Examples:", "Example:", "Returns:", "Return:", "Raises:", "Yields:", "Note:", "Notes:")


def parameter_descriptions(docstring: str) -> dict[str, str]:
    lines = docstring.expandtabs().splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() in ("Args:", "Arguments:", "Parameters:")), None)
    if start is None:
        return {}
    descriptions: dict[str, list[str]] = {}
    entry_indent: int | None = None
    current: str | None = None
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        if stripped in _SECTION_ENDS:
            break
        if entry_indent is None:
            entry_indent = indent
        if indent < entry_indent:
            break
        if indent == entry_indent:
            name, rest = _split_entry(stripped)
            current = name
            if name is not None:
                descriptions.setdefault(name, [])
                if rest:
                    descriptions[name].append(rest)
        elif current is not None:
            descriptions[current].append(stripped)
    return {name: " ".join(parts).strip() for name, parts in descriptions.items()}


def _split_entry(line: str) -> tuple[str | None, str]:
    """`name (`type`, *optional*): text` -> ("name", "text"); `name: text` -> ("name", "text")."""
    head, sep, tail = line.partition(":")
    if not sep:
        return None, ""
    name = head.split("(")[0].strip()
    if not name.isidentifier():
        return None, ""
    if "(" in head and ")" not in head:
        # the type annotation contains a colon of its own; find the colon after the closing parenthesis
        close = line.find(")")
        if close == -1:
            return name, ""
        _, _, tail = line[close:].partition(":")
    tail = tail.strip()
    if tail.startswith("(") and "):" in tail:
        # `name: (`type`): text`, a common slip in diffusers docstrings
        tail = tail.split("):", 1)[1]
    return name, tail.strip()
