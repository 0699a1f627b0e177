"""CareCloud CRM -> careCycle leads, over real HTTP against both emulators."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from airflow_provider_carecycle.carecloud import mapping as crm_mapping
from airflow_provider_carecycle.carecloud.hook import parse_carecloud_datetime
from airflow_provider_carecycle.carecloud.mapping import CARECLOUD_FIELD_MAPPING
from airflow_provider_carecycle.transfers.carecloud import CareCloudCrmToCareCycleLeadsOperator, as_datetime
from carecycle_emulator import CARECLOUD_ANCHOR as ANCHOR

START = (ANCHOR - timedelta(days=3)).replace(tzinfo=timezone.utc)
END = (ANCHOR + timedelta(seconds=1)).replace(tzinfo=timezone.utc)


def in_interval(emulator, start=START, end=END):
    """The seeded CRM customers whose ``last_change`` lies in ``[start, end)`` (the emulator's own data)."""
    utc = timezone.utc
    return [c for c in emulator.customers() if start <= parse_carecloud_datetime(c["last_change"], utc) < end]


def rejected_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_context(start=START, end=END, run_after=None):
    """A task context whose DAG run has the data interval ``[start, end)`` (None: none) and ``run_after``."""
    return {"dag_run": SimpleNamespace(data_interval_start=start, data_interval_end=end, run_after=run_after)}


def make_operator(tmp_path, **kwargs):
    kwargs.setdefault("rejected_path", str(tmp_path / "rejected.jsonl"))
    return CareCloudCrmToCareCycleLeadsOperator(
        task_id="crm_to_leads", max_rejected_ratio=1.0, defaults={"sourceId": "crm-feed"}, **kwargs
    )


def test_every_crm_customer_in_the_interval_is_uploaded_or_rejected(
    carecloud_emulator, carecycle_emulator, tmp_path, captured_logs
):
    expected = in_interval(carecloud_emulator)
    assert 0 < len(expected) < len(carecloud_emulator.customers())

    result = make_operator(tmp_path).execute(run_context())

    assert result["crm_rows"] == result["total"] == len(expected)
    assert result["uploaded"] + result["rejected"] + result["duplicates"] == len(expected)
    assert result["rejected"] > 0, "the seed has non-US phones and missing zips by design"
    uploaded = carecycle_emulator.get_customers_by_external_id()
    rejected = {row["record"]["externalId"]: row for row in rejected_lines(tmp_path / "rejected.jsonl")}
    for customer in expected:
        customer_id = customer["customer_id"]
        assert (customer_id in uploaded) != (customer_id in rejected), customer_id
    assert all(row["stage"] == "validation" and row["reason"] for row in rejected.values())
    assert [reason for reason, _ in result["top_reasons"]]
    first_names = {c["personal_information"]["first_name"] for c in expected}
    logs = captured_logs()
    assert not [name for name in first_names if name and name in logs]


def test_the_interval_bounds_are_templated_and_exclusive_at_the_end(carecloud_emulator, carecycle_emulator, tmp_path):
    start, end = START + timedelta(days=1), START + timedelta(days=2)
    op = make_operator(tmp_path, changed_since=start.isoformat(), changed_before=end.isoformat().replace("+00:00", "Z"))
    result = op.execute({})
    assert result["crm_rows"] == len(in_interval(carecloud_emulator, start, end))


def test_field_mapping_overrides_the_default_crm_mapping(carecloud_emulator, carecycle_emulator, tmp_path):
    mapping = {**CARECLOUD_FIELD_MAPPING}
    del mapping["firstName"], mapping["lastName"]
    result = make_operator(tmp_path, field_mapping=mapping).execute(run_context())
    assert result["uploaded"] > 0
    crm_ids = {c["customer_id"] for c in in_interval(carecloud_emulator)}
    uploaded = {k: v for k, v in carecycle_emulator.get_customers_by_external_id().items() if k in crm_ids}
    assert len(uploaded) == result["uploaded"]
    assert all(not row.get("firstName") and row.get("postalCode") for rows in uploaded.values() for row in rows)


def test_dry_run_reads_the_crm_and_sends_nothing(carecloud_emulator, carecycle_emulator, tmp_path):
    result = make_operator(tmp_path, dry_run=True).execute(run_context())
    assert result["crm_rows"] > 0 and result["uploaded"] == 0
    assert not [r for r in carecycle_emulator.request_log() if r["method"] == "POST"]


def test_a_run_without_data_interval_takes_the_utc_day_before_run_after(tmp_path):
    # a manual Airflow 3 run triggered without a logical date has no data interval, only run_after
    context = run_context(None, None, run_after=datetime(2026, 3, 2, 5, 30, tzinfo=timezone.utc))
    assert make_operator(tmp_path).interval(context) == (
        datetime(2026, 3, 1, tzinfo=timezone.utc),
        datetime(2026, 3, 2, tzinfo=timezone.utc),
    )
    # one bound given: the other still comes from the run
    op = make_operator(tmp_path, changed_since="2026-02-25T00:00:00Z")
    assert op.interval(context) == (
        datetime(2026, 2, 25, tzinfo=timezone.utc),
        datetime(2026, 3, 2, tzinfo=timezone.utc),
    )


def test_no_dag_run_asks_for_explicit_bounds(tmp_path):
    with pytest.raises(ValueError, match="pass the interval's bounds explicitly"):
        make_operator(tmp_path).interval({})


def test_the_old_name_of_the_page_size_is_refused_naming_the_new_one(tmp_path):
    with pytest.raises(TypeError, match=r"no argument 'page_size': it is called 'per_page'; pass per_page="):
        make_operator(tmp_path, page_size=50)


def test_the_old_name_of_the_crm_mapping_is_refused_naming_the_new_one(tmp_path):
    with pytest.raises(TypeError, match=r"no argument 'crm_field_mapping': it is called 'field_mapping'; pass field_"):
        make_operator(tmp_path, crm_field_mapping={"firstName": "personal_information.first_name"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"per_page": 0}, "per_page must be an integer of at least 1"),
        ({"per_page": True}, "per_page must be an integer of at least 1"),
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_operator(tmp_path, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"field_mapping": {"shoeSize": "x"}}, "shoeSize"),
        ({"field_mapping": {"postalCode": ""}}, r"field_mapping\['postalCode'\]: the source path must be"),
        ({"field_mapping": {"city": "personal_information..city"}}, r"field_mapping\['city'\]: .*empty part"),
        ({"field_mapping": {"externalId": 7}}, r"field_mapping\['externalId'\]: .*got a int"),
        ({"field_mapping": "{{ params.text }}"}, "field_mapping must be a mapping"),
        ({"changed_since": "{{ params.text }}"}, "changed_since must be a datetime"),
        ({"extra_params": "{{ params.text }}"}, "extra_params must render to a mapping"),
        ({"rejected_path": "{{ params.empty }}"}, "rejected_path rendered to an empty string"),
    ],
)
def test_templated_arguments_are_checked_once_rendered_before_any_request(
    tmp_path, carecloud_emulator, carecycle_emulator, kwargs, message
):
    op = make_operator(tmp_path, **kwargs)
    op.render_template_fields({"params": {"text": "yesterday", "empty": " "}})
    with pytest.raises(ValueError, match=message):
        op.execute(run_context())
    assert not carecloud_emulator.request_log() and not carecycle_emulator.request_log()


def test_as_datetime_reads_iso_strings_and_rejects_the_rest():
    assert as_datetime("x", "2026-03-01T00:00:00Z") == datetime(2026, 3, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="changed_since must be a datetime"):
        as_datetime("changed_since", "yesterday")


# -- in a real DAG run ----------------------------------------------------------------------------------------

CRM_DAG = """
from datetime import datetime

from airflow import DAG

from airflow_provider_carecycle.transfers.carecloud import CareCloudCrmToCareCycleLeadsOperator

with DAG(dag_id="crm_only", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
    CareCloudCrmToCareCycleLeadsOperator(
        task_id="crm_to_leads",
        changed_since={since!r},
        changed_before={before!r},
        defaults={{"sourceId": "crm-feed"}},
        max_rejected_ratio=1.0,
        rejected_path={rejected!r},
    )
"""


@pytest.mark.airflow_dag
def test_a_dag_run_logs_no_execute_outside_task_instance_warning(
    run_dag_file_in_production_mode, carecloud_emulator, carecycle_emulator, tmp_path
):
    # Airflow's ExecutorSafeguard is silent in unit-test mode (tests/conftest.py): the run goes in a process of its
    # own with unit-test mode off, as in production. The transfer used to call super().execute(), which on
    # Airflow 2.11 logged "CareCloudCrmToCareCycleLeadsOperator.execute cannot be called outside TaskInstance!"
    # on every run.
    from airflow_provider_carecycle._compat import AIRFLOW_V_3_0_PLUS

    rejected = tmp_path / "rejected.jsonl"
    source = CRM_DAG.format(since=START.isoformat(), before=END.isoformat(), rejected=str(rejected))

    tasks, logs = run_dag_file_in_production_mode(source, logical_date=None if AIRFLOW_V_3_0_PLUS else END)

    assert {task_id: task["state"] for task_id, task in tasks.items()} == {"crm_to_leads": "success"}
    assert rejected.is_file()
    assert "crm_to_leads" in logs or "CareCloud" in logs  # the run's own log lines were captured
    assert "cannot be called outside" not in logs


def test_the_crm_mapping_is_checked_once_per_run_not_once_per_crm_row(
    carecloud_emulator, carecycle_emulator, tmp_path, monkeypatch
):
    checks = []
    real_check = crm_mapping.check_field_mapping
    monkeypatch.setattr(crm_mapping, "check_field_mapping", lambda *a: checks.append(a[1]) or real_check(*a))
    mapping = {k: v for k, v in CARECLOUD_FIELD_MAPPING.items() if k != "city"}

    result = make_operator(tmp_path, field_mapping=mapping).execute(run_context())

    assert result["crm_rows"] > 1 and checks == ["field_mapping"]
    assert not any("city" in row["record"] for row in rejected_lines(tmp_path / "rejected.jsonl"))
