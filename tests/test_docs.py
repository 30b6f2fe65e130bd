"""Every relative link in README.md and docs/*.md leads somewhere: a file, and a heading when it says which.

Anchors are GitHub's: a heading's text, lower-cased, punctuation dropped, spaces turned into
hyphens, a repeated heading suffixed -1, -2, ...
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)
HTML_ANCHOR = re.compile(r"<a\s+[^>]*(?:id|name)=\"([^\"]+)\"", re.I)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, ...


def _without_code(text: str) -> str:
    """The text with fenced blocks and code spans blanked (their brackets are not links)."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return CODE_SPAN.sub("", text)


def github_slug(heading: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts by its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    seen: dict[str, int] = {}
    found = set(HTML_ANCHOR.findall(text))
    for _level, title in HEADING.findall(FENCE.sub("", text)):
        slug = github_slug(title)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(path: Path) -> list[str]:
    text = _without_code(path.read_text(encoding="utf-8"))
    links = INLINE_LINK.findall(text) + REFERENCE_DEF.findall(text)
    return [link for link in links if not EXTERNAL.match(link)]


def broken_links(path: Path) -> list[str]:
    broken = []
    for link in relative_links(path):
        target_part, _, anchor = link.partition("#")
        target = (path.parent / unquote(target_part)).resolve() if target_part else path
        if not target.exists():
            broken.append(f"{link}: no file {target}")
        elif anchor and target.suffix == ".md" and unquote(anchor) not in anchors(target):
            broken.append(f"{link}: no heading #{anchor} in {target.name}")
    return broken


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    assert broken_links(doc) == []


def test_the_docs_are_there_and_linked_from_the_readme():
    linked = {link.partition("#")[0] for link in relative_links(ROOT / "README.md")}
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in linked, f"README.md does not link to docs/{page.name}"
    assert len(DOCS) > 1


def readme_dag_code() -> str:
    """The Python block of the README's "A DAG" section."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## A DAG\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    match = re.search(r"^```python\n(.*?)^```", section, re.M | re.S)
    assert match, "README.md's 'A DAG' section has no python block"
    return match.group(1)


def test_the_readme_dag_loads_as_written(tmp_path):
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag

    (tmp_path / "readme_dag.py").write_text(readme_dag_code(), encoding="utf-8")
    bag = DagBag(dag_folder=str(tmp_path))  # examples are off (tests/conftest.py)
    assert bag.import_errors == {}
    (dag,) = bag.dags.values()
    delete = dag.get_task("delete_expired")
    assert type(delete).__name__ == "VikingDBDeleteOperator"
    assert delete.upstream_task_ids == {"find_expired_ids"}
    assert (delete.collection_name, delete.wait_for_index) == ("documents", "documents_index")


def test_github_slugs():
    assert github_slug("Waiting for the index: `VikingDBIndexSyncSensor`, `wait_for_index`") == (
        "waiting-for-the-index-vikingdbindexsyncsensor-wait_for_index"
    )
    assert github_slug("The connection (`vikingdb`, default id `vikingdb_default`)") == (
        "the-connection-vikingdb-default-id-vikingdb_default"
    )
    assert github_slug("Retries and faults") == "retries-and-faults"
    assert github_slug("Deferrable: [the trigger](sensor.md)") == "deferrable-the-trigger"


def test_a_broken_link_or_anchor_is_reported(tmp_path):
    (tmp_path / "other.md").write_text("# Title\n\n## Part one\n\n## Part one\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md) [ok](other.md#part-one-1) [ok](#here) [ext](https://example.com/x.md)\n"
        "`[not a link](nowhere.md)`\n\n```\n[nor this](nowhere.md)\n```\n\n## Here\n\n"
        "[gone](missing.md) [bad anchor](other.md#part-two) [ref]\n\n[ref]: missing-too.md\n"
    )
    assert broken_links(page) == [
        f"missing.md: no file {tmp_path / 'missing.md'}",
        "other.md#part-two: no heading #part-two in other.md",
        f"missing-too.md: no file {tmp_path / 'missing-too.md'}",
    ]
