"""The CRM watermark on its own: the document it writes next to the ledger, and what it refuses to follow.

The watermark in real CRM runs is in ``tests/transfers/test_carecloud_incremental.py``; hostile documents and
stores are in ``tests/adversarial/test_hostile_watermark.py`` and ``test_hostile_state.py``.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_carecycle.sync.watermark import (
    MAX_RETRY_IDS,
    WATERMARK_VERSION,
    SyncWatermark,
    WatermarkState,
    watermark_digest,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
KEY = "carecloud-feed/2\ncrm\nhttps://crm.example\ndestination\n{}"


def watermark_in(folder: Path, key: str = KEY) -> SyncWatermark:
    return SyncWatermark(str(folder), key=key, clock=lambda: NOW)


def test_the_watermark_is_one_private_json_file_in_the_ledger_folder(tmp_path):
    watermark_in(tmp_path).write(NOW - timedelta(hours=1), retry=["c1", "c2"])

    (only,) = list(tmp_path.iterdir())  # no temporary file left behind
    assert only.name == f"watermark-{watermark_digest(KEY)}.json"
    assert stat.S_IMODE(os.stat(only).st_mode) == 0o600
    document = {
        "version": WATERMARK_VERSION,
        "feed": watermark_digest(KEY),
        "last_change": "2026-03-01T11:00:00+00:00",
        "written_at": "2026-03-01T12:00:00+00:00",
        "retry": ["c1", "c2"],
    }
    assert only.read_text(encoding="utf-8") == json.dumps(document)  # the file format, byte for byte
    assert watermark_in(tmp_path).read_state() == WatermarkState(NOW - timedelta(hours=1), ("c1", "c2"))


def test_a_watermark_is_never_after_now_and_a_missing_one_reads_as_none(tmp_path):
    assert watermark_in(tmp_path).read() is None
    watermark_in(tmp_path).write(NOW + timedelta(days=1))
    assert watermark_in(tmp_path).read() == NOW


def test_each_feed_has_its_own_watermark(tmp_path):
    watermark_in(tmp_path, key="feed-a").write(NOW - timedelta(days=2))
    assert watermark_in(tmp_path, key="feed-b").read() is None
    assert watermark_in(tmp_path, key="feed-a").read() == NOW - timedelta(days=2)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(version=1), "not a version 2 watermark"),
        (lambda d: d.update(feed="0" * 16), "it names another feed"),
        (lambda d: d.update(written_at="2027-01-01T00:00:00+00:00"), "it was written in the future"),
        (lambda d: d.update(last_change="2026-03-01T11:00:00"), "its last_change is not an ISO 8601 time in UTC"),
        (lambda d: d.update(retry=["not an id!"]), "its retry entry holds something other than distinct customer"),
        (lambda d: d.pop("retry"), "its keys are not"),
    ],
)
def test_a_document_not_of_the_providers_shape_is_ignored_with_a_warning_and_left_alone(
    tmp_path, caplog, change, problem
):
    watermark_in(tmp_path).write(NOW - timedelta(hours=1))
    (path,) = list(tmp_path.iterdir())
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))

    with caplog.at_level(logging.WARNING):
        assert watermark_in(tmp_path).read_state() is None
    assert problem in caplog.text
    assert json.loads(path.read_text()) == document  # never deleted or rewritten


def test_a_document_that_is_not_json_is_ignored(tmp_path, caplog):
    (tmp_path / f"watermark-{watermark_digest(KEY)}.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert watermark_in(tmp_path).read_state() is None
    assert "not JSON" in caplog.text


def test_at_most_max_retry_ids_are_kept(tmp_path):
    with pytest.raises(ValueError, match=f"at most {MAX_RETRY_IDS} ids"):
        watermark_in(tmp_path).write(NOW, retry=[f"c{i}" for i in range(MAX_RETRY_IDS + 1)])
    assert not list(tmp_path.iterdir())
