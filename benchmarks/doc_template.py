"""The prose of the generated documents: Markdown files in benchmarks/templates/ with `$name` placeholders
(string.Template), filled in by the scripts that write docs/performance.md and docs/results.md."""
from __future__ import annotations

from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).resolve().parent / "templates"


def render(name: str, **values: object) -> str:
    """templates/NAME with every placeholder filled (a missing value raises KeyError). The file's final
    newline is not part of the text: a value that ends a line brings its own."""
    text = (TEMPLATES / name).read_text().removesuffix("\n")
    return Template(text).substitute({k: str(v) for k, v in values.items()})


def block(items: list[str]) -> str:
    """Lines as one value: each ends with a newline (nothing at all for no lines)."""
    return "".join(f"{item}\n" for item in items)
