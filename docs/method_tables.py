"""Write the tables of docs/reference/methods.md from the installed vaekit's method specs:
`python docs/method_tables.py` (tests/test_docs.py checks that the page is up to date)."""

from __future__ import annotations

import re
from pathlib import Path

from vaekit import methods

PAGE = Path(__file__).parent / "reference" / "methods.md"
BLOCK = re.compile(r"(<!-- generated: (?P<what>[\w-]+) -->\n).*?(<!-- end generated -->)", re.S)


def generated(what: str) -> str:
    if what == "capabilities":
        return "\n".join(f"| `{name}` | {meaning} |" for name, meaning in methods.CAPABILITIES.items())
    return methods.markdown_table(what)


def page_text(text: str) -> str:
    """`text` with every generated block replaced by its current content."""
    return BLOCK.sub(lambda m: f"{m.group(1)}{generated(m.group('what'))}\n{m.group(3)}", text)


if __name__ == "__main__":
    PAGE.write_text(page_text(PAGE.read_text()))
