"""CareCloud CRM -> careCycle with ``incremental=True``: the watermark, over real HTTP against both emulators."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from airflow_provider_carecycle._compat import AirflowFailException
from airflow_provider_carecycle.transfers.carecloud import CareCloudCrmToCareCycleLeadsOperator
from tests.transfers.test_carecloud import START, in_interval, run_context

DAY = timedelta(days=1)


def interval(day: int) -> dict[str, object]:
    """The task context of the run for ``day`` (0: the day from START)."""
    return run_context(START + day * DAY, START + (day + 1) * DAY)


def bounds(day: int) -> tuple[object, object]:
    return START + day * DAY, START + (day + 1) * DAY


def incremental(tmp_path, **kwargs):
    kwargs.setdefault("max_rejected_ratio", 1.0)
    return CareCloudCrmToCareCycleLeadsOperator(
        task_id="crm_to_leads",
        defaults={"sourceId": "crm-feed"},
        incremental=True,
        sync_state_path=str(tmp_path / "ledger"),
        **kwargs,
    )


def newest(customers):
    return max(c["last_change"] for c in customers)


def test_a_failed_day_is_read_by_the_next_run(carecloud_emulator, carecycle_emulator, tmp_path):
    day0 = in_interval(carecloud_emulator, *bounds(0))
    first = incremental(tmp_path).execute(interval(0))
    assert first["crm_rows"] == len(day0)
    mark = first["watermark"]
    assert mark.startswith(newest(day0).replace(" ", "T"))

    with pytest.raises(AirflowFailException):  # day 1: rejections above the ratio fail the task
        incremental(tmp_path, max_rejected_ratio=0.0).execute(interval(1))
    (watermark,) = (tmp_path / "ledger").glob("watermark-*.json")
    assert json.loads(watermark.read_text())["last_change"] == mark  # it did not advance

    third = incremental(tmp_path).execute(interval(2))  # day 2's run reads from day 0's watermark
    since = START.fromisoformat(mark) - timedelta(minutes=5)
    expected = in_interval(carecloud_emulator, since, START + 3 * DAY)
    assert third["crm_rows"] == len(expected) > len(in_interval(carecloud_emulator, *bounds(2)))
    assert third["total"] == third["uploaded"] + third["rejected"] + third["duplicates"] + third["unchanged"]
    assert third["watermark"] > mark


def test_the_overlap_is_free_and_a_deleted_watermark_falls_back_to_the_interval(
    carecloud_emulator, carecycle_emulator, tmp_path
):
    mark = START.fromisoformat(incremental(tmp_path).execute(interval(0))["watermark"])
    overlap = timedelta(hours=20)
    again = incremental(tmp_path, overlap=overlap).execute(interval(1))
    assert again["crm_rows"] == len(in_interval(carecloud_emulator, mark - overlap, START + 2 * DAY))
    assert again["unchanged"] > 0  # day 0's leads read again were not sent again

    for path in (tmp_path / "ledger").glob("watermark-*.json"):
        path.unlink()
    reset = incremental(tmp_path).execute(interval(2))
    assert reset["crm_rows"] == len(in_interval(carecloud_emulator, *bounds(2)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sync_state_path": None}, "incremental=True keeps its watermark next to the sync ledger"),
        ({"overlap": -1}, "overlap must be a duration"),
        ({"overlap": timedelta(days=2)}, "overlap must be a duration"),
    ],
)
def test_bad_incremental_arguments_fail_when_the_dag_is_parsed(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CareCloudCrmToCareCycleLeadsOperator(
            task_id="t", incremental=True, **{"sync_state_path": str(tmp_path), **kwargs}
        )


def test_an_earlier_releases_per_connection_watermark_is_only_a_bound_and_is_left_alone(
    carecloud_emulator, carecycle_emulator, tmp_path
):
    from airflow_provider_carecycle.carecloud.hook import CareCloudCrmHook
    from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
    from airflow_provider_carecycle.sync.watermark import watermark_digest
    from airflow_provider_carecycle.transfers.carecloud import legacy_watermark_key

    legacy = legacy_watermark_key("carecloud_crm_default", CareCloudCrmHook().base_url, CareCycleHook().destination_id)
    mark = START + timedelta(hours=12)  # older than day 1's interval: it was the feeds' common watermark
    old = tmp_path / "ledger" / f"watermark-{watermark_digest(legacy)}.json"
    old.parent.mkdir()
    document = {"version": 1, "last_change": mark.isoformat(), "written_at": (mark + DAY).isoformat()}
    old.write_text(json.dumps(document))

    result = incremental(tmp_path).execute(interval(1))
    since = mark - timedelta(minutes=5)  # the earlier of the old watermark (minus the overlap) and the interval
    assert result["crm_rows"] == len(in_interval(carecloud_emulator, since, START + 2 * DAY))
    assert json.loads(old.read_text()) == document  # never rewritten, never deleted: other feeds may need it
    assert len(list((tmp_path / "ledger").glob("watermark-*.json"))) == 2  # and this feed has its own now
