"""The lead upload family's outcome: the XCom value every lead upload task returns, key for key and in order."""

from __future__ import annotations

import json
from collections import Counter

from airflow_provider_carecycle.sync.summary import UploadSummary

KEYS = [
    "total",
    "valid",
    "uploaded",
    "rejected",
    "duplicates",
    "unchanged",
    "suppressed",
    "batches",
    "skipped_batches",
    "rejected_path",
    "elapsed_s",
    "dry_run",
    "top_reasons",
    "fields_dropped",
]


def test_the_xcom_value_has_the_counts_and_the_top_reasons_in_their_order():
    summary = UploadSummary(total=9, valid=7, uploaded=5, rejected=3, duplicates=1, batches=1, elapsed_s=1.23456)
    summary.reasons.update({"validation: phoneNumber: required": 2, "api: record (api_error)": 1})
    summary.refused_rows.append(4)
    value = summary.as_dict()
    assert list(value) == KEYS
    assert value["elapsed_s"] == 1.235 and value["rejected_path"] is None and value["dry_run"] is False
    assert value["top_reasons"] == [["validation: phoneNumber: required", 2], ["api: record (api_error)", 1]]
    assert json.loads(json.dumps(value)) == value  # plain JSON: what XCom stores


def test_at_most_five_reasons_are_listed():
    summary = UploadSummary(reasons=Counter({f"reason {n}": n + 1 for n in range(8)}))
    assert [reason for reason, _ in summary.as_dict()["top_reasons"]] == [f"reason {n}" for n in range(7, 2, -1)]


def test_the_crm_transfer_adds_its_rows_and_watermark_after_the_counts():
    summary = UploadSummary(total=3, crm_rows=3)
    assert list(summary.as_dict()) == [*KEYS, "crm_rows"]
    summary.watermark = "2026-03-01T11:00:00+00:00"
    assert list(summary.as_dict()) == [*KEYS, "crm_rows", "watermark"]
    assert summary.as_dict()["watermark"] == "2026-03-01T11:00:00+00:00"
