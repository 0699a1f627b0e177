"""The calls export's ``mode="placed"``: the calls placed in an interval, every call exactly once across daily runs,
against the careCycle emulator with a call history over several days."""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from airflow_provider_carecycle.exceptions import CareCycleMalformedAnswerError
from airflow_provider_carecycle.operators.customers import CareCycleExtractCustomerCallsOperator
from airflow_provider_carecycle.storage import iter_records

FAST = {"requests_per_minute": 6000}
H = {"x-api-key": "cc_test_key"}
#: the days the emulator's dialer calls on (a week and more before the seeded history ends does not matter: the
#: seeded calls on these days are exported too)
FIRST_DAY = dt.datetime(2031, 5, 1, tzinfo=dt.timezone.utc)
DAYS = [FIRST_DAY + dt.timedelta(days=n) for n in range(9)]
#: when, on each day, the dialer ticks: the first tick is on the stroke of midnight (it belongs to that day)
TICKS = [dt.timedelta(0), dt.timedelta(hours=13), dt.timedelta(hours=23, minutes=59, seconds=59)]


def export_day(tmp_path, day, name=None, **kwargs):
    """One daily run: the calls placed in [day, day + 1)."""
    op = CareCycleExtractCustomerCallsOperator(
        task_id="calls",
        mode="placed",
        output_path=str(tmp_path / (name or f"{day:%Y-%m-%d}.jsonl")),
        since="{{ data_interval_start }}",
        until="{{ data_interval_end }}",
        hook_params=FAST,
        **kwargs,
    )
    op.render_template_fields({"data_interval_start": day, "data_interval_end": day + dt.timedelta(days=1)})
    summary = op.execute({})
    return summary, list(iter_records(summary["path"]))


def calls_between(emu, start, end):
    """Every call the emulator holds created in [start, end), as (customer id, call id)."""
    low, high = (f"{t:%Y-%m-%dT%H:%M:%S}.000Z" for t in (start, end))
    rows = emu.store.db.execute(
        "SELECT c.customer_id, c.id FROM calls c JOIN customers k ON k.id = c.customer_id "
        "WHERE c.created_at >= ? AND c.created_at < ? AND k.test_customer = 0",
        (low, high),
    ).fetchall()
    return sorted((r[0], r[1]) for r in rows)


@pytest.fixture
def dialing(carecycle_emulator):
    """The emulator with one more active campaign of 40 new leads, called up to 9 times each."""
    emu = carecycle_emulator
    emu.add_campaign(name="Daily history", status="active", takes_new_leads=True, max_attempts=9)
    records = [{"phoneNumber": f"555333{i:04d}", "postalCode": "85001", "externalId": f"p-{i}"} for i in range(40)]
    assert requests.post(f"{emu.url}/v2/leads/upload", headers=H, json={"records": records}, timeout=10).ok
    return emu


def dial_on(emu, day):
    return sum(emu.tick_dialer(1, at=day + offset) for offset in TICKS)


def test_daily_runs_write_every_call_exactly_once_and_a_late_backfill_writes_the_first_runs_rows(dialing, tmp_path):
    emu = dialing
    files = {}
    for index, day in enumerate(DAYS):
        assert dial_on(emu, day) > 0
        if index:  # the run for yesterday starts today, after today's first calls were placed
            files[DAYS[index - 1]] = export_day(tmp_path, DAYS[index - 1])
    exported = [(r["customerId"], r["id"]) for _, rows in files.values() for r in rows]
    assert len(exported) == len(set(exported))  # no call twice
    assert sorted(exported) == calls_between(emu, DAYS[0], DAYS[-1])  # every call of those days once
    for day, (summary, rows) in files.items():
        assert rows and all(day <= dt.datetime.fromisoformat(r["createdAt"].replace("Z", "+00:00")) for r in rows)
        assert summary["count"] == len(rows) and summary["missing_customers"] == 0
    midnight = [r for _, rows in files.values() for r in rows if r["createdAt"].endswith("T00:00:00.000Z")]
    assert midnight and all(
        files[dt.datetime.fromisoformat(r["createdAt"][:10] + "T00:00:00+00:00")][1].count(r) for r in midnight
    )

    # a week after its first run, day 1 is backfilled: the same rows, although its customers were called since
    first_summary, first_rows = files[DAYS[0]]
    summary, rows = export_day(tmp_path, DAYS[0], name="backfill.jsonl")
    assert rows == first_rows
    assert summary["customers"] >= first_summary["customers"]  # customers called later are listed, then cut


def test_requests_are_the_listing_pages_plus_one_per_called_customer(dialing, tmp_path):
    emu = dialing
    dial_on(emu, DAYS[0])
    day_customers = {customer for customer, _ in calls_between(emu, DAYS[0], DAYS[1])}
    summary, rows = export_day(tmp_path, DAYS[0])
    listing = emu.query_customers({"lastCallStartDate": f"{DAYS[0]:%Y-%m-%d}"})
    assert {r["customerId"] for r in rows} == day_customers and summary["customers"] == len(listing)
    listing_pages = max(1, -(-len(listing) // 100))
    assert summary["requests"] == listing_pages + len(listing)


def test_a_customer_deleted_after_the_listing_is_counted_missing_and_its_calls_are_the_exception(dialing, tmp_path):
    emu = dialing
    dial_on(emu, DAYS[0])
    _, first_rows = export_day(tmp_path, DAYS[0])
    gone = first_rows[0]["customerId"]
    emu.delete_between_pages(after=1, customers=[gone])  # once the listing's first page is answered
    summary, rows = export_day(tmp_path, DAYS[0], name="rerun.jsonl")
    assert summary["missing_customers"] == 1
    # calls never change, but a customer (and its calls) deleted in careCycle's web app is gone from a rerun
    assert rows == [r for r in first_rows if r["customerId"] != gone]


def test_calls_out_of_newest_first_order_fail_the_export_instead_of_missing_a_day(dialing, tmp_path, monkeypatch):
    emu = dialing
    dial_on(emu, DAYS[0])
    original = emu.store.customer_calls

    def oldest_first(customer_id, sort_by, direction, limit, offset):
        return original(customer_id, sort_by, "asc", limit, offset)

    monkeypatch.setattr(emu.store, "customer_calls", oldest_first)
    with pytest.raises(CareCycleMalformedAnswerError, match="not newest first"):
        export_day(tmp_path, DAYS[0])  # the new leads' calls, all on that day, come oldest first
    assert not (tmp_path / f"{DAYS[0]:%Y-%m-%d}.jsonl").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "placed"}, "mode='placed' needs since"),
        ({"mode": "placed", "since": "2031-05-01", "customer_ids": ["x"]}, "finds the customers itself"),
        ({"mode": "dialled", "since": "2031-05-01"}, "mode must be one of"),
        ({"customer_ids": ["x"], "until": "2031-05-01", "sort_by": "duration"}, "since and until need the calls"),
    ],
)
def test_placed_mode_arguments_are_checked_in_the_constructor(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CareCycleExtractCustomerCallsOperator(task_id="t", output_path="/x.jsonl", **kwargs)


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("{{ params.empty }}", None, "since rendered to an empty value"),
        ("2031-05-02", "2031-05-01", "must be later than since"),
        ("2031-05-01", "next week", "until must be a date"),
    ],
)
def test_placed_mode_templated_arguments_are_checked_before_any_request(
    carecycle_emulator, tmp_path, since, until, message
):
    op = CareCycleExtractCustomerCallsOperator(
        task_id="t", mode="placed", output_path=str(tmp_path / "c.jsonl"), since=since, until=until
    )
    op.render_template_fields({"params": {"empty": ""}})
    with pytest.raises(ValueError, match=message):
        op.execute({})
    assert not [r for r in carecycle_emulator.request_log() if r["path"].startswith("/v2/")]
