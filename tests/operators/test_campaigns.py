"""Campaign snapshots, over real HTTP against the careCycle emulator."""

from __future__ import annotations

import csv
import json

import pytest

from airflow_provider_carecycle._compat import AirflowFailException
from airflow_provider_carecycle.campaign_stats import campaign_summary
from airflow_provider_carecycle.operators.campaigns import (
    SNAPSHOT_COLUMNS,
    CareCycleCampaignSnapshotOperator,
    format_table,
)
from airflow_provider_carecycle.storage import iter_records

UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"
FAST = {"requests_per_minute": 6000}


def snapshot(tmp_path, name="campaigns.jsonl", **kwargs):
    kwargs.setdefault("hook_params", FAST)
    op = CareCycleCampaignSnapshotOperator(task_id="snapshot", output_path=str(tmp_path / name), **kwargs)
    return op.execute({})


def expected_rows(emu, ids=None):
    """What the emulator holds, as snapshot rows without the timestamp, by campaign id."""
    return {c["id"]: campaign_summary(c) for c in emu.list_campaigns() if ids is None or c["id"] in ids}


def without_timestamp(rows):
    return {r["id"]: {k: v for k, v in r.items() if k != "snapshot_at"} for r in rows}


def api_requests(emu):
    return [r for r in emu.request_log() if r["path"].startswith("/v2/campaigns")]


# -- constructor ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"campaign_ids": [UNKNOWN_ID], "statuses": ["active"]}, "either campaign_ids, or statuses"),
        ({"campaign_ids": "{{ params.ids }}", "search": "x"}, "either campaign_ids, or statuses"),
        ({"format": "xlsx"}, "Valid formats: jsonl, json, csv"),
    ],
)
def test_non_templated_arguments_fail_at_parse_time(kwargs, message):
    kwargs = {"output_path": "/tmp/x.jsonl", **kwargs}
    with pytest.raises(ValueError, match=message):
        CareCycleCampaignSnapshotOperator(task_id="snapshot", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"statuses": ["running"]}, "Valid statuses: draft, active, paused"),
        ({"statuses": "{{ params.nothing }}"}, "Valid statuses: draft, active, paused"),
        ({"output_path": ""}, "output_path rendered to an empty string"),
        ({"output_path": "  "}, "output_path rendered to an empty string"),
        ({"campaign_ids": [UNKNOWN_ID, 3]}, "campaign_ids must be a list"),
    ],
)
def test_templated_arguments_are_taken_as_given_and_checked_before_any_request(
    kwargs, message, tmp_path, carecycle_emulator
):
    op = CareCycleCampaignSnapshotOperator(
        task_id="snapshot", **{"output_path": str(tmp_path / "x.jsonl"), **kwargs}, hook_params=FAST
    )
    op.render_template_fields({"params": {"nothing": ""}})
    with pytest.raises(ValueError, match=message):
        op.execute({})
    assert not api_requests(carecycle_emulator) and not list(tmp_path.iterdir())


def test_arguments_are_templated_and_nothing_is_built_at_parse_time():
    op = CareCycleCampaignSnapshotOperator(
        task_id="snapshot",
        output_path="/ops/campaign_stats/{{ ts_nodash }}.jsonl",
        statuses="{{ params.statuses }}",
    )
    assert "hook" not in op.__dict__
    op.render_template_fields({"ts_nodash": "20260101T000000", "params": {"statuses": "active"}})
    assert op.output_path == "/ops/campaign_stats/20260101T000000.jsonl"
    assert op.statuses == "active"


# -- rows -----------------------------------------------------------------------------------------------------------


def test_jsonl_rows_match_the_emulator_campaigns_exactly(tmp_path, carecycle_emulator):
    emu = carecycle_emulator
    emu.tick_dialer(3)  # figures that moved since seeding
    result = snapshot(tmp_path, statuses=["active", "paused"])
    rows = list(iter_records(tmp_path / "campaigns.jsonl"))
    assert without_timestamp(rows) == expected_rows(emu)
    assert [list(r) for r in rows] == [list(SNAPSHOT_COLUMNS)] * len(rows)
    assert len({r["snapshot_at"] for r in rows}) == 1
    assert {r["status"] for r in rows} == {"active", "paused"}
    assert set(result) == {r["id"] for r in rows}
    # one list request per status
    assert sorted(r["query"].get("status") for r in api_requests(emu)) == ["active", "paused"]


def test_csv_has_the_snapshot_columns_and_the_same_figures(tmp_path, carecycle_emulator):
    snapshot(tmp_path, name="campaigns.csv")
    with open(tmp_path / "campaigns.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == list(SNAPSHOT_COLUMNS)
        rows = list(reader)
    expected = expected_rows(carecycle_emulator)
    assert {r["id"]: {k: v for k, v in r.items() if k != "snapshot_at"} for r in rows} == {
        cid: {k: str(v) for k, v in row.items()} for cid, row in expected.items()
    }


def test_campaign_ids_fetch_each_campaign_once(tmp_path, carecycle_emulator):
    emu = carecycle_emulator
    ids = [c["id"] for c in emu.list_campaigns()][1:]
    result = snapshot(tmp_path, campaign_ids=ids)
    rows = list(iter_records(tmp_path / "campaigns.jsonl"))
    assert [r["id"] for r in rows] == ids
    assert without_timestamp(rows) == expected_rows(emu, ids)
    assert sorted(r["path"] for r in api_requests(emu)) == sorted(f"/v2/campaigns/{i}" for i in ids)
    assert list(result) == ids


def test_search_and_status_narrow_the_list(tmp_path, carecycle_emulator):
    emu = carecycle_emulator
    paused = emu.add_campaign(name="Paused AEP follow-up", status="paused")
    snapshot(tmp_path, statuses="paused", search="AEP")
    rows = list(iter_records(tmp_path / "campaigns.jsonl"))
    expected = [c["id"] for c in emu.list_campaigns() if c["status"] == "paused" and "AEP" in c["name"]]
    assert paused["id"] in expected
    assert sorted(r["id"] for r in rows) == sorted(expected)


def test_append_builds_a_time_series(tmp_path, carecycle_emulator):
    emu = carecycle_emulator
    first = snapshot(tmp_path, name="series.csv", append=True)
    emu.tick_dialer(2)
    second = snapshot(tmp_path, name="series.csv", append=True)
    rows = list(iter_records(tmp_path / "series.csv"))
    assert len(rows) == 2 * len(first)
    active = next(cid for cid, s in first.items() if s["status"] == "active")
    calls = [int(r["totalCalls"]) for r in rows if r["id"] == active]
    assert calls == [first[active]["totalCalls"], second[active]["totalCalls"]]
    assert calls[1] > calls[0]


def test_without_append_the_file_is_replaced(tmp_path, carecycle_emulator):
    snapshot(tmp_path)
    snapshot(tmp_path)
    assert len(list(iter_records(tmp_path / "campaigns.jsonl"))) == len(carecycle_emulator.list_campaigns())


def test_gzipped_output(tmp_path, carecycle_emulator):
    snapshot(tmp_path, name="campaigns.jsonl.gz")
    assert without_timestamp(iter_records(tmp_path / "campaigns.jsonl.gz")) == expected_rows(carecycle_emulator)


def test_unknown_campaign_id_fails_at_once_naming_it(tmp_path, carecycle_emulator):
    with pytest.raises(AirflowFailException, match=f"campaign {UNKNOWN_ID} was not found"):
        snapshot(tmp_path, campaign_ids=[UNKNOWN_ID])
    assert not (tmp_path / "campaigns.jsonl").exists()


# -- what comes back, and what is logged ----------------------------------------------------------------------------


def test_returned_dict_is_small_and_keyed_by_campaign_id(tmp_path, carecycle_emulator):
    emu = carecycle_emulator
    for i in range(20):
        emu.add_campaign(name=f"Campaign {i}")
    result = snapshot(tmp_path)
    campaigns = emu.list_campaigns()
    assert set(result) == {c["id"] for c in campaigns}
    for cid, figures in result.items():
        expected = expected_rows(emu)[cid]
        assert figures == {k: v for k, v in expected.items() if k != "id"}
    assert len(json.dumps(result)) < 2048 * len(campaigns)
    assert max(len(json.dumps(v)) for v in result.values()) < 600


def test_logs_a_readable_table(tmp_path, carecycle_emulator, captured_logs):
    result = snapshot(tmp_path)
    text = captured_logs()
    assert "3 campaigns" in text
    for cid, figures in result.items():
        assert cid in text and figures["name"] in text


def test_format_table_aligns_columns():
    table = format_table(
        [{"id": "a", "name": "Short", "status": "active", "total": 5}, {"id": "bb", "name": "Longer name"}]
    )
    lines = table.splitlines()
    assert lines[0].split() == [
        "id",
        "name",
        "status",
        "total",
        "totalCalls",
        "todayCalls",
        "status_completed",
        "status_pending",
        "status_failed",
    ]
    assert lines[1].index("Short") == lines[2].index("Longer name") == lines[0].index("name")
