"""Every published number has its record: each registered section of README.md, docs/ and the model cards is
exactly what its committed results file renders, and no page holds a marked section that nothing renders."""

from __future__ import annotations

import json
import re

import pytest

from sdedit.lab import records
from sdedit.lab.records import REPO_ROOT, SECTIONS

PAGES = [
    REPO_ROOT / "README.md",
    *sorted((REPO_ROOT / "docs").glob("*.md")),
    *sorted(REPO_ROOT.glob("models/*/README.md")),
]


@pytest.mark.parametrize("section", SECTIONS, ids=[s.key for s in SECTIONS])
def test_each_section_is_what_its_committed_record_renders(section):
    for results in section.results:
        path = REPO_ROOT / results
        assert path.is_file(), f"{section.key}: its record {results} is not committed"
        assert path.stat().st_size < 1_000_000, f"{results}: a results file is a small JSON"
        json.loads(path.read_text())
    page = (REPO_ROOT / section.page).read_text()
    begin, end = records.markers(section.key)
    assert page.count(begin) == 1 and page.count(end) == 1, f"{section.page} needs one {begin} ... {end}"
    expected = section.render_text()
    assert records.read_section(page, section.key) == expected, (
        f"{section.page}'s {section.key} section differs from what {', '.join(section.results)} renders: "
        f"run `python -m sdedit.lab.records {section.key}`"
    )


def test_every_marked_section_is_registered_and_uses_one_marker_format():
    keys = {s.key for s in SECTIONS}
    assert len(keys) == len(SECTIONS), "a key is registered twice"
    for page in PAGES:
        text = page.read_text()
        assert not re.search(r"^<!-- (bench:[\w-]+|[\w-]+:start|[\w-]+:[\w-]+:begin) -->$", text, re.M), page
        for key in re.findall(r"^<!-- ([\w-]+):begin -->$", text, re.M):  # markers stand on their own lines
            assert key in keys or key in records.UNRECORDED, f"{page.name}: section {key} is rendered from no record"
            assert f"<!-- {key}:end -->" in text


def test_publish_renders_only_the_sections_a_record_feeds(tmp_path, monkeypatch):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "a.json").write_text('{"n": 3}')
    (tmp_path / "r" / "b.json").write_text('{"n": 4}')
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n<!-- one:begin -->\nold\n<!-- one:end -->\n\nhand-written\n")
    fake = (
        records.section("one", "page.md", "r/a.json", "json:dumps"),
        records.section("two", "page.md", ("r/a.json", "r/b.json"), "tests.lab.test_records:_sum"),
        records.section("three", "other.md", "r/b.json", "json:dumps"),
    )
    monkeypatch.setattr(records, "SECTIONS", fake)
    written = records.publish(tmp_path / "r" / "a.json", tmp_path)
    assert written == [page, page] and not (tmp_path / "other.md").exists()
    text = page.read_text()
    assert records.read_section(text, "one") == '{"n": 3}' and records.read_section(text, "two") == "7"
    assert "hand-written" in text and text.index("one:begin") < text.index("hand-written") < text.index("two:begin")
    assert records.stale(tmp_path) == ["three"]  # other.md has no section yet
    records.publish(tmp_path / "r" / "b.json", tmp_path)
    assert records.stale(tmp_path) == []
    (tmp_path / "r" / "b.json").write_text('{"n": 5}')  # a new record: the pages that show it are stale
    assert records.stale(tmp_path) == ["two", "three"]
    with pytest.raises(ValueError, match=r"rendered from r/a\.json, not from"):
        records.publish_body("x", tmp_path / "r" / "b.json", "one", tmp_path)
    with pytest.raises(KeyError, match="no section 'four'"):
        records.registered("four")


def _sum(a: dict, b: dict) -> str:
    return str(a["n"] + b["n"])
