"""Where a benchmark's numbers go: its JSON under benchmarks/results/ and its own section of a docs page.

A section is what lies between `<!-- KEY:begin -->` and `<!-- KEY:end -->`, so that each tool rewrites only
its part of a page. No torch here: the app and live benchmarks import this before their thread policy is
applied (torch reads it when it loads).
"""

from __future__ import annotations

import json
import re
from pathlib import Path


def replace_between(text: str, begin: str, end: str, body: str) -> str:
    """`text` with what lies between the `begin` and `end` markers replaced by `body` (appended when absent)."""
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return text.rstrip() + "\n\n" + block + "\n"


def write_section(path: Path, key: str, body: str) -> None:
    """Rewrite the `<!-- KEY:begin -->` ... `<!-- KEY:end -->` section of the page at `path`."""
    text = path.read_text() if path.exists() else ""
    path.write_text(replace_between(text, f"<!-- {key}:begin -->", f"<!-- {key}:end -->", body))


def publish(result: dict, json_path: Path, body: str, page: Path, key: str, docs: bool = True) -> None:
    """Save `result` as `json_path`, print its markdown `body`, and (with `docs`) put it in its section of `page`."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(body)
    if docs:
        write_section(page, key, body)
