"""CHANGELOG.md has a section for the version the package metadata says, with the four kinds of entry, and the
versions are in order, newest first."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import airflow_provider_carecycle

ROOT = Path(__file__).resolve().parent.parent
_VERSION = re.compile(r"^## (?P<version>\d+\.\d+\.\d+)\b", re.MULTILINE)


def sections(text: str) -> dict[str, str]:
    """Version -> the text of its section (up to the next version's heading)."""
    found = list(_VERSION.finditer(text))
    return {
        m["version"]: text[m.end() : (found[i + 1].start() if i + 1 < len(found) else len(text))]
        for i, m in enumerate(found)
    }


def test_the_metadata_version_has_a_changelog_section_with_every_kind_of_entry() -> None:
    version = importlib.metadata.version("airflow-provider-carecycle")
    assert version == airflow_provider_carecycle.__version__
    changelog = sections((ROOT / "CHANGELOG.md").read_text(encoding="utf-8"))
    assert version in changelog, sorted(changelog)
    headings = re.findall(r"^### (\w+)", changelog[version], re.MULTILINE)
    assert headings == ["Added", "Changed", "Breaking", "Fixed"]


def test_the_versions_run_newest_first_down_to_the_first() -> None:
    versions = list(sections((ROOT / "CHANGELOG.md").read_text(encoding="utf-8")))
    as_tuples = [tuple(int(p) for p in v.split(".")) for v in versions]
    assert as_tuples == sorted(as_tuples, reverse=True) and versions[-1] == "0.1.0"


def test_sections_split_at_version_headings() -> None:
    text = "# Changelog\n## 1.2.0 (unreleased)\n### Added\n- a\n## 1.1.0\n### Fixed\n- b\n"
    assert sections(text) == {"1.2.0": " (unreleased)\n### Added\n- a\n", "1.1.0": "\n### Fixed\n- b\n"}
