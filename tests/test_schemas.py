"""The export schemas: documented column for column, in order, in docs/operators/extract-customers.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from airflow_provider_carecycle.schemas import ADDED_COLUMNS, CALL_SCHEMA, CUSTOMER_SCHEMA, export_schema

DOC = Path(__file__).resolve().parents[1] / "docs" / "operators" / "extract-customers.md"
_ROW = re.compile(r"^\| `(?P<name>[^`]+)` \| `(?P<kind>[^`]+)` \|$")


def documented(heading: str) -> list[tuple[str, str]]:
    """The ``| `column` | `type` |`` rows of the table under ``### heading``."""
    text = DOC.read_text(encoding="utf-8").split(f"\n### {heading}\n", 1)[1].split("\n#", 1)[0]
    return [(m["name"], m["kind"]) for line in text.splitlines() if (m := _ROW.match(line))]


@pytest.mark.parametrize(
    ("heading", "schema"),
    [("Customers", CUSTOMER_SCHEMA), ("Calls", CALL_SCHEMA), ("Added by the export", list(ADDED_COLUMNS.items()))],
)
def test_every_schema_is_documented_in_order(heading, schema):
    assert documented(heading) == schema


def test_an_export_schema_keeps_the_asked_order_and_types_what_it_knows():
    assert export_schema("calls", ["createdAt", "customerId", "x.y"], ["extractedAt"]) == [
        ("createdAt", "timestamp"),
        ("customerId", "string"),
        ("x.y", "text"),
        ("extractedAt", "timestamp"),
    ]
    assert export_schema("customers", None)[:2] == [("id", "string"), ("createdAt", "timestamp")]
