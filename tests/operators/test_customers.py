"""Customer and call extraction, over real HTTP against the careCycle emulator."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from airflow_provider_carecycle._compat import AirflowFailException
from airflow_provider_carecycle.exceptions import CareCycleServerError
from airflow_provider_carecycle.hooks.customer_filters import CUSTOMER_FILTERS, customer_query_params
from airflow_provider_carecycle.operators import customers as module
from airflow_provider_carecycle.operators.customers import (
    CareCycleExtractCustomerCallsOperator,
    CareCycleExtractCustomersOperator,
)
from airflow_provider_carecycle.storage import iter_records

UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"
OLDEST_FIRST = {"sortBy": "createdAt", "sortDirection": "asc"}
#: the test emulator allows 6000 requests a minute; the hook's default (60, careCycle's limit) would make tests wait
FAST = {"requests_per_minute": 6000}


def export_customers(tmp_path, name="customers.jsonl", hook_params=None, **kwargs):
    op = CareCycleExtractCustomersOperator(
        task_id="export", output_path=str(tmp_path / name), hook_params={**FAST, **(hook_params or {})}, **kwargs
    )
    return op.execute({})


def export_calls(tmp_path, name="calls.jsonl", hook_params=None, **kwargs):
    op = CareCycleExtractCustomerCallsOperator(
        task_id="calls", output_path=str(tmp_path / name), hook_params={**FAST, **(hook_params or {})}, **kwargs
    )
    return op.execute({})


def api_requests(emu, prefix):
    return [r for r in emu.request_log() if r["path"].startswith(prefix)]


def all_calls(emu, customer_id):
    """The emulator's own list of a customer's calls, newest first."""
    return emu.store.customer_calls(customer_id, "createdAt", "desc", 10_000, 0)[1]


def created(row):
    return dt.datetime.fromisoformat(row["createdAt"].replace("Z", "+00:00"))


# -- constructor: arguments only, checked early ---------------------------------------------------------------


def test_the_filters_mapping_is_templated_and_nothing_is_built_at_parse_time():
    op = CareCycleExtractCustomersOperator(
        task_id="t",
        output_path="/{{ ds }}.jsonl",
        filters={name: f"{{{{ params.{name} }}}}" for name in CUSTOMER_FILTERS},
        extra_params={"x": "{{ ds }}"},
    )
    assert "hook" not in op.__dict__  # nothing built at parse time
    op.render_template_fields({"ds": "2026-01-01", "params": {name: f"v-{name}" for name in CUSTOMER_FILTERS}})
    assert op.filters == {name: f"v-{name}" for name in CUSTOMER_FILTERS}
    assert op.output_path == "/2026-01-01.jsonl" and op.extra_params == {"x": "2026-01-01"}


def test_start_and_end_date_filters_leave_the_tasks_own_dates_alone():
    default_start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    op = CareCycleExtractCustomersOperator(
        task_id="t",
        output_path="/x.jsonl",
        filters={"start_date": "2026-01-01", "end_date": "2026-02-01", "states": ["FL"]},
        default_args={"start_date": default_start},
    )
    assert op.start_date == default_start and op.end_date is None
    assert op.query_params() == {
        "sortBy": "createdAt",  # stable order by default
        "sortDirection": "asc",
        "startDate": "2026-01-01",
        "endDate": "2026-02-01",
        "states": "FL",
    }


def test_start_date_is_the_tasks_own_argument_again():
    op = CareCycleExtractCustomersOperator(
        task_id="t", output_path="/x.jsonl", start_date=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    )
    assert op.start_date == dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc) and op.filters is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"per_page": 0}, "per_page must be an integer from 1 to 100"),
        ({"per_page": 101}, "per_page must be an integer from 1 to 100"),
        ({"format": "xlsx"}, "format must be one of"),
        ({"fields": []}, "fields must be a non-empty list"),
        ({"fields": "id"}, "fields must be a non-empty list"),
        ({"return_records": True}, r"pass fields=\[\.\.\.\]"),
    ],
)
def test_non_templated_customers_arguments_are_checked_in_the_constructor(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CareCycleExtractCustomersOperator(task_id="t", **{"output_path": "/x.jsonl", **kwargs})


def test_unknown_argument_is_refused():
    with pytest.raises(Exception, match="statuses"):
        CareCycleExtractCustomersOperator(task_id="t", output_path="/x.jsonl", statuses=["Lead"])


@pytest.mark.parametrize(
    ("operator", "source"),
    [(CareCycleExtractCustomersOperator, {}), (CareCycleExtractCustomerCallsOperator, {"customer_ids": []})],
)
def test_the_old_name_of_the_page_size_is_refused_naming_the_new_one(operator, source):
    with pytest.raises(TypeError, match=r"no argument 'page_size': it is called 'per_page'; pass per_page=\.\.\."):
        operator(task_id="t", output_path="/x.jsonl", page_size=50, **source)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filters": {"statuses": ["Bogus"]}}, "Valid values: Lead, Active, Inactive"),
        ({"filters": {"statuss": ["Lead"]}}, "Unknown careCycle customer filter"),
        ({"filters": {"start_date": "yesterday"}}, "takes a date"),
        ({"filters": {"statuses": "{{ params.s }}"}}, "Invalid value for careCycle customer filter 'statuses'"),
        ({"filters": "{{ params.s }}"}, "filters must render to a mapping"),
        ({"extra_params": ["states"]}, "extra_params must render to a mapping"),
        ({"output_path": ""}, "output_path rendered to an empty string"),
        ({"output_path": "{{ params.empty }}"}, "output_path rendered to an empty string"),
    ],
)
def test_templated_customers_arguments_are_checked_once_rendered_before_any_request(
    carecycle_emulator, tmp_path, kwargs, message
):
    op = CareCycleExtractCustomersOperator(task_id="t", **{"output_path": str(tmp_path / "{{ ds }}.jsonl"), **kwargs})
    op.render_template_fields({"ds": "2099-01-01", "params": {"s": "Nonsense", "empty": ""}})
    with pytest.raises(ValueError, match=message):
        op.execute({})
    assert not list(tmp_path.iterdir()) and not api_requests(carecycle_emulator, "/v2/")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of customer_ids"),
        ({"customer_ids": [UNKNOWN_ID], "customer_ids_path": "/c.jsonl"}, "exactly one of customer_ids"),
        ({"customer_ids": [UNKNOWN_ID], "sort_by": "length"}, "sort_by must be one of"),
        ({"customer_ids": [UNKNOWN_ID], "sort_direction": "up"}, "sort_direction must be one of"),
        ({"customer_ids": [UNKNOWN_ID], "since": "2026-01-01", "sort_direction": "asc"}, "until need the calls"),
    ],
)
def test_calls_arguments_are_checked_in_the_constructor(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CareCycleExtractCustomerCallsOperator(task_id="t", output_path="/x.jsonl", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"customer_ids": [UNKNOWN_ID], "since": "last tuesday"}, "since must be a date"),
        ({"customer_ids": [UNKNOWN_ID], "since": "{{ params.bad }}"}, "since must be a date"),
        ({"customer_ids_path": "{{ params.empty }}"}, "customer_ids_path rendered to an empty string"),
        ({"customer_ids": [UNKNOWN_ID], "output_path": " "}, "output_path rendered to an empty string"),
        ({"customer_ids": {"id": UNKNOWN_ID}}, "customer_ids must render to a list"),
    ],
)
def test_templated_calls_arguments_are_checked_once_rendered_before_any_request(
    carecycle_emulator, tmp_path, kwargs, message
):
    op = CareCycleExtractCustomerCallsOperator(task_id="t", **{"output_path": str(tmp_path / "c.jsonl"), **kwargs})
    op.render_template_fields({"params": {"bad": "last tuesday", "empty": ""}})
    with pytest.raises(ValueError, match=message):
        op.execute({})
    assert not list(tmp_path.iterdir()) and not api_requests(carecycle_emulator, "/v2/")


# -- customers: filters, projection, formats ------------------------------------------------------------------

FILTER_CASES = [
    {"statuses": ["Lead", "Active"]},
    {"states": ["FL", "TX"]},
    {"campaign_ids": "FIRST_CAMPAIGN"},
    {"date_field": "createdAt", "start_date": "2026-03-01", "end_date": "2026-09-30"},
    {"policy_types": ["MAPD", "PDP"]},
    {"policy_statuses": ["Active"]},
    {"customer_campaign_statuses": ["completed"]},
    {"has_prior_attempts": True},
    {"last_call_start_date": "2026-06-01"},
    {"source_ids": ["src_web"]},
    {"assigned_member_ids": ["unassigned"]},
    {"statuses": ["Lead"], "states": ["FL", "TX", "CA", "NY"]},
]


@pytest.mark.parametrize("filters", FILTER_CASES, ids=lambda f: ",".join(f))
def test_each_filter_narrows_the_export_like_the_api(carecycle_emulator, tmp_path, filters):
    carecycle_emulator.reset(customers=300)
    if filters.get("campaign_ids") == "FIRST_CAMPAIGN":
        filters = {"campaign_ids": [carecycle_emulator.list_campaigns()[0]["id"]]}
    summary = export_customers(tmp_path, per_page=40, filters=filters)

    expected = carecycle_emulator.query_customers(customer_query_params({**filters}, OLDEST_FIRST))
    everyone = carecycle_emulator.query_customers(OLDEST_FIRST)
    assert 0 < len(expected) < len(everyone)  # the filter really narrows
    assert [r["id"] for r in iter_records(summary["path"])] == [c["id"] for c in expected]
    assert summary["count"] == len(expected)
    assert summary["pages"] == summary["requests"] == math.ceil(len(expected) / 40)


def test_extra_params_pass_raw_parameters_through(carecycle_emulator, tmp_path):
    summary = export_customers(tmp_path, extra_params={"states": "FL", "includeTestNumbers": "true"})
    expected = carecycle_emulator.query_customers({"states": "FL", "includeTestNumbers": "true", **OLDEST_FIRST})
    assert [r["id"] for r in iter_records(summary["path"])] == [c["id"] for c in expected]
    assert api_requests(carecycle_emulator, "/v2/customers")[0]["query"]["states"] == "FL"


def test_projection_keeps_only_the_chosen_fields_in_order(carecycle_emulator, tmp_path):
    fields = ["id", "status", "source.name", "assignedMember.email", "campaigns", "noSuchField"]
    summary = export_customers(tmp_path, fields=fields)
    rows = list(iter_records(summary["path"]))
    expected = carecycle_emulator.query_customers(OLDEST_FIRST)
    assert len(rows) == len(expected) > 40
    for row, customer in zip(rows, expected, strict=True):
        assert list(row) == fields
        assert row["source.name"] == (customer["source"] or {}).get("name")
        assert row["assignedMember.email"] == (customer["assignedMember"] or {}).get("email")
        assert row["campaigns"] == customer["campaigns"] and row["noSuchField"] is None
        assert "phoneNumber" not in row and "firstName" not in row


@pytest.mark.parametrize("name", ["c.jsonl", "c.jsonl.gz", "c.csv", "c.csv.gz", "c.json", "c.json.gz"])
def test_formats_round_trip(carecycle_emulator, tmp_path, name):
    summary = export_customers(tmp_path, name, per_page=20, fields=["id", "totalCalls", "campaigns", "source.name"])
    expected = carecycle_emulator.query_customers(OLDEST_FIRST)
    rows = list(iter_records(summary["path"]))
    assert summary["format"] == name.split(".")[1] and summary["count"] == len(rows) == len(expected)
    for row, customer in zip(rows, expected, strict=True):
        assert row["id"] == customer["id"]
        if ".csv" in name:  # CSV: text cells, nested values as JSON text
            assert row["totalCalls"] == str(customer["totalCalls"])
            assert json.loads(row["campaigns"]) == customer["campaigns"]
        else:
            assert row["totalCalls"] == customer["totalCalls"] and row["campaigns"] == customer["campaigns"]
    with open(tmp_path / name, "rb") as raw:
        assert (raw.read(2) == b"\x1f\x8b") == name.endswith(".gz")


def test_whole_records_by_default_and_json_lines_for_unknown_suffix(carecycle_emulator, tmp_path):
    summary = export_customers(tmp_path, "customers.out")
    assert summary["format"] == "jsonl"
    rows = [json.loads(line) for line in (tmp_path / "customers.out").read_text().splitlines()]
    assert rows == carecycle_emulator.query_customers(OLDEST_FIRST)


def test_csv_on_request_without_projection(carecycle_emulator, tmp_path):
    summary = export_customers(tmp_path, "customers.txt.gz", format="csv")
    rows = list(iter_records(summary["path"], format="csv"))
    assert summary["format"] == "csv" and [r["id"] for r in rows] == [
        c["id"] for c in carecycle_emulator.query_customers(OLDEST_FIRST)
    ]
    with gzip.open(tmp_path / "customers.txt.gz", "rt") as text:
        assert text.readline().startswith("id,createdAt,")


def test_templated_output_path_and_dates(carecycle_emulator, tmp_path):
    op = CareCycleExtractCustomersOperator(
        task_id="t",
        output_path=str(tmp_path / "{{ ds }}.jsonl.gz"),
        filters={
            "date_field": "createdAt",
            "start_date": "{{ data_interval_start | ds }}",
            "end_date": "{{ data_interval_end | ds }}",
        },
        fields=["id"],
    )
    start, end = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc), dt.datetime(2026, 9, 1, tzinfo=dt.timezone.utc)
    op.render_template_fields({"ds": "2026-03-01", "data_interval_start": start, "data_interval_end": end})
    summary = op.execute({})
    assert summary["path"].endswith(f"{tmp_path}/2026-03-01.jsonl.gz")
    query = api_requests(carecycle_emulator, "/v2/customers")[0]["query"]
    assert (query["startDate"], query["endDate"]) == ("2026-03-01", "2026-09-01")
    expected = carecycle_emulator.query_customers(
        {"dateField": "createdAt", "startDate": "2026-03-01", "endDate": "2026-09-01", **OLDEST_FIRST}
    )
    assert [r["id"] for r in iter_records(summary["path"])] == [c["id"] for c in expected]


def test_summary_is_small_and_counts_pages_and_requests(carecycle_emulator, tmp_path):
    carecycle_emulator.reset(customers=230)
    summary = export_customers(tmp_path, per_page=50, filters={"include_test_numbers": True})
    assert set(summary) == {"path", "format", "count", "pages", "requests", "rate_limited", "elapsed_s"}
    assert (summary["count"], summary["pages"], summary["requests"], summary["rate_limited"]) == (230, 5, 5, 0)
    assert len(api_requests(carecycle_emulator, "/v2/customers")) == 5
    assert len(json.dumps(summary)) < 300


def test_logs_progress_and_counts_never_patient_data(carecycle_emulator, tmp_path, captured_logs):
    export_customers(tmp_path, per_page=20, filters={"include_test_numbers": True})
    logs = captured_logs()
    assert "50 of 50 customers (100%)" in logs
    assert "Wrote 50 customers to" in logs
    for customer in carecycle_emulator.query_customers({"includeTestNumbers": "true"}):
        for key in ("phoneNumber", "lastName", "email", "dateOfBirth", "mbiNumber"):
            if customer.get(key):
                assert str(customer[key]) not in logs, key


# -- the file appears only when complete -----------------------------------------------------------------------


def test_failed_export_leaves_nothing_at_output_path(carecycle_emulator, tmp_path):
    carecycle_emulator.configure(fault_rate=0.05, fault_kinds=("503",))  # seeded: the 4th request fails
    out_dir = tmp_path / "out"
    with pytest.raises(CareCycleServerError):
        export_customers(out_dir, per_page=5, hook_params={"max_retries": 0})
    statuses = [r["status"] for r in api_requests(carecycle_emulator, "/v2/customers")]
    assert statuses == [200, 200, 200, 503]  # 15 rows were written when the stream broke
    assert not (out_dir / "customers.jsonl").exists()
    assert list(out_dir.iterdir()) == []  # no partial file either


def test_a_previous_complete_export_survives_a_failed_rerun(carecycle_emulator, tmp_path):
    first = export_customers(tmp_path, fields=["id"], filters={"include_test_numbers": True})
    carecycle_emulator.configure(fault_rate=1.0, fault_kinds=("500",))
    with pytest.raises(CareCycleServerError):
        export_customers(tmp_path, fields=["id"], hook_params={"max_retries": 0})
    assert sum(1 for _ in iter_records(first["path"])) == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["customers.jsonl"]


# -- return_records ----------------------------------------------------------------------------------------------


def test_return_records_for_small_exports(carecycle_emulator, tmp_path):
    summary = export_customers(tmp_path, filters={"statuses": ["Lead"]}, fields=["id", "status"], return_records=True)
    expected = carecycle_emulator.query_customers({"statuses": "Lead", **OLDEST_FIRST})
    assert summary["records"] == [{"id": c["id"], "status": "Lead"} for c in expected]
    assert summary["count"] == len(expected) > 0


def test_return_records_fails_clearly_beyond_the_cap(carecycle_emulator, tmp_path, monkeypatch):
    monkeypatch.setattr(module, "MAX_RETURN_RECORDS", 30)
    with pytest.raises(AirflowFailException, match="at most 30 rows.*has 50"):
        export_customers(
            tmp_path, per_page=10, fields=["id"], return_records=True, filters={"include_test_numbers": True}
        )
    # told by the first page's itemsTotal: at most the pages already prefetched were read beyond it
    assert len(api_requests(carecycle_emulator, "/v2/customers")) <= 2 + module.PREFETCH_PAGES < 5
    assert list(tmp_path.iterdir()) == []


# -- calls ----------------------------------------------------------------------------------------------------


def test_calls_of_many_customers_across_pages(carecycle_emulator, tmp_path):
    ids = [c["id"] for c in carecycle_emulator.query_customers(OLDEST_FIRST)]
    summary = export_calls(tmp_path, customer_ids=ids, per_page=2)

    expected = [{"customerId": cid, **call} for cid in ids for call in all_calls(carecycle_emulator, cid)]
    assert len(expected) > 40 and max(len(all_calls(carecycle_emulator, cid)) for cid in ids) > 2
    assert list(iter_records(summary["path"])) == expected
    pages = sum(max(1, math.ceil(len(all_calls(carecycle_emulator, cid)) / 2)) for cid in ids)
    assert (summary["count"], summary["pages"], summary["requests"]) == (len(expected), pages, pages)
    assert (summary["customers"], summary["missing_customers"]) == (len(ids), 0)
    assert len(api_requests(carecycle_emulator, "/v2/customers/")) == pages


def test_calls_for_the_ids_in_a_customers_export(carecycle_emulator, tmp_path):
    customers = export_customers(
        tmp_path, "customers.csv.gz", filters={"has_prior_attempts": True}, fields=["id", "status"]
    )
    ids = [r["id"] for r in iter_records(customers["path"])]
    summary = export_calls(tmp_path, "calls.csv", customer_ids_path=customers["path"], fields=["id", "disposition"])
    rows = list(iter_records(summary["path"]))
    expected = [(cid, call["id"]) for cid in ids for call in all_calls(carecycle_emulator, cid)]
    assert [(r["customerId"], r["id"]) for r in rows] == expected and expected
    assert list(rows[0]) == ["customerId", "id", "disposition"]
    assert summary["customers"] == len(ids) == customers["count"]


def test_since_stops_paging_each_customer_at_the_first_older_call(carecycle_emulator, tmp_path):
    ids = [c["id"] for c in carecycle_emulator.query_customers(OLDEST_FIRST)]
    calls = {cid: all_calls(carecycle_emulator, cid) for cid in ids}
    stamps = sorted(created(call) for rows in calls.values() for call in rows)
    since = stamps[len(stamps) // 2]
    summary = export_calls(tmp_path, customer_ids=ids, per_page=2, since=since.isoformat().replace("+00:00", "Z"))

    expected, requests = [], 0
    for cid in ids:
        newer = [c for c in calls[cid] if created(c) >= since]
        expected += [(cid, c["id"]) for c in newer]
        older_at = len(newer) if len(newer) < len(calls[cid]) else None
        requests += older_at // 2 + 1 if older_at is not None else max(1, math.ceil(len(calls[cid]) / 2))
    rows = list(iter_records(summary["path"]))
    assert [(r["customerId"], r["id"]) for r in rows] == expected
    assert all(created(r) >= since for r in rows) and 0 < len(rows) < len(stamps)
    full = sum(max(1, math.ceil(len(c) / 2)) for c in calls.values())
    assert len(api_requests(carecycle_emulator, "/v2/customers/")) == summary["requests"] == requests < full


def test_deleted_customer_is_counted_missing_not_fatal(carecycle_emulator, tmp_path, captured_logs):
    ids = [c["id"] for c in carecycle_emulator.query_customers({"hasPriorAttempts": "true"})][:3]
    summary = export_calls(tmp_path, customer_ids=[ids[0], UNKNOWN_ID, ids[1], ids[1], ids[2]])
    assert (summary["customers"], summary["missing_customers"]) == (4, 1)  # duplicates read once
    expected = sum(len(all_calls(carecycle_emulator, cid)) for cid in ids)
    assert summary["count"] == expected > 0
    assert f"Customer {UNKNOWN_ID} was not found" in captured_logs()


def test_calls_from_comma_separated_text(carecycle_emulator, tmp_path):
    ids = [c["id"] for c in carecycle_emulator.query_customers({"hasPriorAttempts": "true"})][:2]
    summary = export_calls(tmp_path, customer_ids=f"{ids[0]}, {ids[1]}")
    assert summary["customers"] == 2 and {r["customerId"] for r in iter_records(summary["path"])} == set(ids)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"customer_ids": ["not-a-uuid"]}, "Customer id #1 is not a careCycle customer UUID"),
        # hex in UUID shape, but no RFC 9562 version/variant: the hook refuses it, so the operator does too, up front
        ({"customer_ids": ["12345678-1234-1234-1234-123456789012"]}, "Customer id #1 is not a careCycle customer UUID"),
        ({"customer_ids_path": "ids.jsonl"}, "Row 2 of ids.jsonl has no 'id'"),
    ],
)
def test_bad_customer_ids_fail_clearly(carecycle_emulator, tmp_path, source, message):
    (tmp_path / "ids.jsonl").write_text(json.dumps({"id": UNKNOWN_ID}) + "\n" + json.dumps({"x": 1}) + "\n")
    if "customer_ids_path" in source:
        source = {"customer_ids_path": str(tmp_path / "ids.jsonl")}
    with pytest.raises(ValueError, match=message):
        export_calls(tmp_path / "out", **source)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    if "customer_ids" in source:  # a list is checked whole before the first request (a file is streamed)
        assert api_requests(carecycle_emulator, "/v2/customers/") == []


def test_killed_export_leaves_nothing_at_output_path(carecycle_emulator, tmp_path):
    """SIGKILL gives no chance to clean up, and nothing is left: the rows went to a file with no name (O_TMPFILE),
    which the kernel reclaims with the process; output_path never appears."""
    carecycle_emulator.configure(latency_ms=40)
    target = tmp_path / "customers.jsonl"
    script = (
        "from airflow_provider_carecycle.operators.customers import CareCycleExtractCustomersOperator as Op\n"
        f"Op(task_id='t', output_path={str(target)!r}, per_page=1, hook_params={FAST!r}).execute({{}})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(api_requests(carecycle_emulator, "/v2/customers")) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "the export ended before it could be killed"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_prefetch_stops_the_producer_when_the_consumer_stops():
    produced = []

    def pages():
        for n in range(1000):
            produced.append(n)
            yield n

    stream = module._prefetched(pages(), depth=2)
    assert [next(stream), next(stream)] == [0, 1]
    stream.close()
    time.sleep(0.3)
    assert len(produced) <= 2 + 2 + 1  # what was read, what was queued, and one blocked in put()


def test_prefetch_raises_the_producers_error_in_order():
    def pages():
        yield 1
        yield 2
        raise CareCycleServerError("no answer")

    got = []
    with pytest.raises(CareCycleServerError, match="no answer"):
        for item in module._prefetched(pages()):
            got.append(item)
    assert got == [1, 2]
