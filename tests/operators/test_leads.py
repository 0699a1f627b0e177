"""CareCycleUploadLeadsOperator over real HTTP against the careCycle emulator."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_carecycle._compat import AirflowFailException
from airflow_provider_carecycle.exceptions import CareCycleAuthError
from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator
from tests.sync.test_summary import KEYS as SUMMARY_KEYS

MAPPING = {"phoneNumber": "phone", "postalCode": "address.zip", "firstName": "first", "lastName": "last"}


def crm(i: int, **extra: Any) -> dict[str, Any]:
    """A CRM-shaped source record with a distinct phone and externalId."""
    return {
        "externalId": f"crm-{i}",
        "phone": f"(212) 555-{i:04d}",
        "first": f"Zelda{i}",
        "last": "Quixote",
        "address": {"zip": "10001-1234"},
        **extra,
    }


def upload(tmp_path: Path, **kwargs: Any) -> CareCycleUploadLeadsOperator:
    kwargs.setdefault("field_mapping", MAPPING)
    kwargs.setdefault("rejected_path", str(tmp_path / "rejected.jsonl"))
    return CareCycleUploadLeadsOperator(task_id="upload_leads", **kwargs)


def rejected_rows(tmp_path: Path) -> dict[int | None, dict[str, Any]]:
    lines = (tmp_path / "rejected.jsonl").read_text().splitlines()
    return {entry["row"]: entry for entry in map(json.loads, lines)}


def upload_requests(emu: Any) -> list[dict[str, Any]]:
    return [e for e in emu.request_log() if e["path"] == "/v2/leads/upload"]


# -- constructor -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of records"),
        ({"records": [], "source_path": "/x.jsonl"}, "exactly one of records"),
        ({"records": [], "batch_size": 0}, "batch_size must be an integer from 1 to 200"),
        ({"records": [], "batch_size": 201}, "batch_size must be an integer from 1 to 200"),
        ({"records": [], "max_in_flight": 0}, "max_in_flight must be an integer from 1 to 32"),
        ({"records": [], "max_rejected_ratio": 1.5}, "max_rejected_ratio must be from 0.0 to 1.0"),
        ({"records": [], "max_rejected_ratio": "high"}, "max_rejected_ratio must be a number"),
        ({"records": [], "progress_every_s": 0}, "progress_every_s must be positive"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CareCycleUploadLeadsOperator(task_id="t", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"records": "nope"}, "records must resolve to a list of dicts"),
        ({"records": "{{ params.text }}"}, "records must resolve to a list of dicts"),
        ({"records": [], "field_mapping": {"phone": "phone"}}, "field_mapping: not careCycle lead fields: phone"),
        ({"records": [], "defaults": {"source": "x"}}, "defaults: not careCycle lead fields: source"),
        ({"records": [], "defaults": "{{ params.text }}"}, "defaults must be a mapping"),
        ({"source_path": "/x.txt", "source_format": "xml"}, "source_format must be one of"),
        ({"source_path": "/x.txt", "source_format": "{{ params.text }}"}, "source_format must be one of"),
        ({"records": [], "allowed_regions": "US,{{ params.text }}"}, "allowed_regions: not region codes .*: XML"),
        ({"records": [], "allowed_regions": "US,GB"}, "allowed_regions: careCycle dials \\+1 numbers only"),
        ({"records": [], "allowed_regions": "{{ params.empty }}"}, "allowed_regions must name at least one"),
        ({"records": [], "allowed_number_types": "{{ params.text }}"}, "allowed_number_types: unknown number types"),
        ({"records": [], "invalid_optional": "{{ params.text }}"}, "invalid_optional must be 'drop' or 'reject'"),
    ],
)
def test_templated_arguments_are_taken_as_given_and_checked_once_rendered(
    kwargs, message, tmp_path, carecycle_emulator
):
    op = CareCycleUploadLeadsOperator(task_id="t", **kwargs)  # no error yet: they may be templates
    with pytest.raises(ValueError, match=message):
        op.render_template_fields({"params": {"text": "xml", "empty": ""}})
        op.execute({})
    assert not upload_requests(carecycle_emulator) and not list(tmp_path.iterdir())


def test_constructor_does_no_work_and_templates_user_fields():
    op = CareCycleUploadLeadsOperator(task_id="t", source_path="s3://bucket/{{ ds }}.jsonl", carecycle_conn_id="nope")
    assert "hook" not in op.__dict__
    for name in ("records", "source_path", "field_mapping", "defaults", "rejected_path", "checkpoint_path"):
        assert name in op.template_fields
    for name in ("allowed_regions", "allowed_number_types", "invalid_optional"):
        assert name in op.template_fields


def test_the_validation_policies_render_from_templates_and_reach_the_validator(tmp_path, carecycle_emulator):
    records = [
        {"externalId": "ca", "phone": "(416) 555-0142", "address": {"zip": "10001"}},
        {"externalId": "tf", "phone": "(800) 555-0142", "address": {"zip": "10001"}},
        {"externalId": "em", "phone": "(212) 555-0142", "address": {"zip": "10001"}, "email": "a..b@example.com"},
    ]
    op = upload(
        tmp_path,
        records=records,
        field_mapping={**MAPPING, "email": "email"},
        allowed_regions="{{ params.regions }}",
        allowed_number_types=["fixed_line_or_mobile", "{{ params.extra_type }}"],
        invalid_optional="{{ params.policy }}",
        max_rejected_ratio=1.0,
    )
    op.render_template_fields({"params": {"regions": "US,CA", "extra_type": "toll_free", "policy": "drop"}})

    result = op.execute({})

    assert (result["uploaded"], result["rejected"]) == (3, 0)
    assert result["fields_dropped"] == {"email: not a valid e-mail address (syntax checked by email-validator)": 1}
    stored = {key: customers[0] for key, customers in carecycle_emulator.get_customers_by_external_id().items()}
    assert {"ca", "tf", "em"} <= set(stored)
    assert stored["ca"]["phoneNumber"] == "+14165550142" and stored["em"].get("email") is None


def test_render_keeps_literal_records_out_of_jinja_and_out_of_rendered_fields(tmp_path):
    records = [{"phone": "{{ not a template }}"}]
    op = upload(tmp_path, records=records, rejected_path=str(tmp_path / "{{ ds }}.jsonl"))
    op.render_template_fields({"ds": "2026-01-02"})
    assert op.rejected_path.endswith("2026-01-02.jsonl")
    assert op.records == "<1 records, not shown: they may hold patient data>"
    assert list(op.iter_source({})) == records


# -- validation and normalisation, every rule -----------------------------------------------------------------

#: (bad record fields, rejected field, reason fragment) - one bad case per validation rule
BAD_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"phone": None}, "phoneNumber", "required but missing"),
    ({"phone": "212-555-01"}, "phoneNumber", "too short"),
    ({"phone": "+44 20 7946 0958"}, "phoneNumber", "region GB is not allowed"),
    ({"phone": "phone me"}, "phoneNumber", "not a phone number"),
    ({"phone": "(012) 555-0100"}, "phoneNumber", "not a valid number in the numbering plan"),
    ({"phone": "(800) 555-0100"}, "phoneNumber", "a toll-free number is not dialled"),
    ({"address": {"zip": "1234"}}, "postalCode", "5-digit ZIP"),
    ({"address": {}}, "postalCode|timezone", "at least one is required"),
    ({"address": {}, "timezone": "Mars/Olympus"}, "timezone", "not an IANA time zone"),
    ({"dateOfBirth": "02-30-1950"}, "dateOfBirth", "not a real date"),
    ({"dateOfBirth": "13/01/1950"}, "dateOfBirth", "month is not 01-12"),
    ({"dateOfBirth": "1950.02.03"}, "dateOfBirth", "expected MM-DD-YYYY"),
    ({"dateOfBirth": "01-01-2999"}, "dateOfBirth", "in the future"),
    ({"first": "x" * 256}, "firstName", "longer than 255 characters"),
    ({"state": "s" * 51}, "state", "longer than 50 characters"),
    ({"email": "not-an-email"}, "email", "not a valid e-mail address"),
    ({"gender": "robot"}, "gender", "not an allowed value"),
    ({"maritalStatus": "complicated"}, "maritalStatus", "not an allowed value"),
    ({"dependentCount": 2**31}, "dependentCount", "outside the allowed range"),
    ({"householdIncome": 1.5}, "householdIncome", "expected a whole number"),
    ({"veteran": "maybe"}, "veteran", "expected a boolean"),
    ({"leadCost": -1}, "leadCost", "must not be negative"),
    ({"customFields": [{"fieldKey": f"k{i}", "value": i} for i in range(51)]}, "customFields", "at most 50"),
    ({"customFields": [{"fieldKey": "", "value": 1}]}, "customFields[0].fieldKey", "required but empty"),
    ({"customFields": [{"fieldKey": "k" * 101, "value": 1}]}, "customFields[0].fieldKey", "longer than 100"),
    ({"favouriteColour": "teal"}, "favouriteColour", "not a careCycle lead field"),
]


def test_every_validation_rule_rejects_with_its_reason_and_every_good_record_is_stored(carecycle_emulator, tmp_path):
    good = [crm(i) for i in range(30)]
    bad = [crm(100 + n, **fields) for n, (fields, _, _) in enumerate(BAD_CASES)]
    records = [rec for pair in zip(good[: len(bad)], bad, strict=True) for rec in pair] + good[len(bad) :]
    op = upload(tmp_path, records=records, max_rejected_ratio=1.0, batch_size=7, invalid_optional="reject")

    result = op.execute({})

    assert result["total"] == len(records)
    assert result["rejected"] == len(BAD_CASES)
    assert result["uploaded"] == result["valid"] == len(good)
    rejected = rejected_rows(tmp_path)
    assert len(rejected) == len(BAD_CASES)
    for n, (_, field, reason) in enumerate(BAD_CASES):
        row = 2 * n + 2  # bad records sit at even 1-based rows
        entry = rejected[row]
        assert entry["stage"] == "validation"
        assert entry["record"]["externalId"] == f"crm-{100 + n}"
        matching = [e for e in entry["errors"] if e["field"] == field]
        assert matching, (row, field, entry["errors"])
        assert reason.lower() in matching[0]["reason"].lower(), (field, matching[0]["reason"])
    stored = carecycle_emulator.get_customers_by_external_id()
    for rec in good:
        assert len(stored[rec["externalId"]]) == 1
    for n in range(len(BAD_CASES)):
        assert f"crm-{100 + n}" not in stored


@pytest.mark.parametrize(
    ("fields", "stored"),
    [
        ({"phone": "212.555.0142"}, {"phoneNumber": "+12125550142"}),
        ({"phone": "1 212 555 0142"}, {"phoneNumber": "+12125550142"}),
        ({"phone": "+1-212-555-0142"}, {"phoneNumber": "+12125550142"}),
        ({"dateOfBirth": "2/3/1950"}, {"dateOfBirth": "1950-02-03"}),  # sent as 02-03-1950; the API returns ISO
        ({"dateOfBirth": "1950-02-03"}, {"dateOfBirth": "1950-02-03"}),
        ({"gender": "f", "maritalStatus": "MARRIED"}, {"gender": "Female", "maritalStatus": "Married"}),
        ({"address": {"zip": "10001-1234"}}, {"postalCode": "10001"}),
    ],
)
def test_values_are_normalised_before_sending(carecycle_emulator, tmp_path, fields, stored):
    result = upload(tmp_path, records=[crm(1, **fields)]).execute({})

    assert result["uploaded"] == 1
    (sent,) = upload_requests(carecycle_emulator)
    assert sent["status"] == 200
    (customer,) = carecycle_emulator.get_customers_by_external_id()["crm-1"]
    assert {key: customer[key] for key in stored} == stored


def test_duplicates_are_merged_last_wins_and_counted(carecycle_emulator, tmp_path):
    records = [
        crm(1, city="Albany"),
        crm(2),
        crm(1, first="Later"),  # same externalId: merged into row 1, last value wins, city kept
        {"phone": "646 555 0100", "address": {"zip": "10002"}},
        {"phone": "(646) 555-0100", "address": {"zip": "10003"}},  # same phone, no externalId
    ]
    result = upload(tmp_path, records=records).execute({})

    assert result == {**result, "total": 5, "valid": 5, "duplicates": 2, "uploaded": 3, "rejected": 0}
    (sent,) = upload_requests(carecycle_emulator)
    assert sent["batch"]["size"] == 3
    (customer,) = carecycle_emulator.get_customers_by_external_id()["crm-1"]
    assert customer["firstName"] == "Later"
    assert customer["city"] == "Albany"
    assert [c["postalCode"] for c in carecycle_emulator.query_customers({"search": "6465550100"})] == ["10003"]


def test_drop_unknown_fields_uploads_instead_of_rejecting(carecycle_emulator, tmp_path):
    records = [crm(1, favouriteColour="teal")]
    result = upload(tmp_path, records=records, drop_unknown_fields=True).execute({})
    assert (result["uploaded"], result["rejected"]) == (1, 0)


def test_defaults_fill_missing_fields(carecycle_emulator, tmp_path):
    records = [crm(1, address={}), crm(2, address={}, timezone="America/Chicago")]
    result = upload(tmp_path, records=records, defaults={"timezone": "EST", "sourceId": "crm-feed"}).execute({})
    assert result["uploaded"] == 2
    stored = carecycle_emulator.get_customers_by_external_id()
    assert stored["crm-1"][0]["timezone"] == "EST"
    assert stored["crm-2"][0]["timezone"] == "America/Chicago"


# -- API-side rejections --------------------------------------------------------------------------------------


def test_per_record_api_errors_become_api_rejections(carecycle_emulator, tmp_path):
    records = [crm(i) for i in range(5)]
    records[3]["sourceId"] = "no-such-source"
    result = upload(tmp_path, records=records, max_rejected_ratio=0.5).execute({})

    assert (result["uploaded"], result["rejected"]) == (4, 1)
    (entry,) = rejected_rows(tmp_path).values()
    assert (entry["stage"], entry["row"], entry["batch"]) == ("api", 4, 0)
    assert "Source not found" in entry["reason"]
    assert entry["record"]["externalId"] == "crm-3"


def test_batch_validation_error_isolates_the_offender_and_resends_the_rest(carecycle_emulator, tmp_path):
    records = [crm(i) for i in range(200)]
    records[57]["sourceId"] = "s" * 300  # passes client validation; the API caps sourceId at 255 characters
    result = upload(tmp_path, records=records, max_rejected_ratio=0.01).execute({})

    assert (result["uploaded"], result["rejected"], result["batches"]) == (199, 1, 1)
    (entry,) = rejected_rows(tmp_path).values()
    assert (entry["stage"], entry["row"], entry["field"]) == ("api", 58, "sourceId")
    assert "255" in entry["reason"]
    statuses = [(r["status"], r["batch"]["size"]) for r in upload_requests(carecycle_emulator)]
    assert statuses == [(400, 200), (200, 199)]
    stored = carecycle_emulator.get_customers_by_external_id()
    assert "crm-57" not in stored
    assert all(len(stored[f"crm-{i}"]) == 1 for i in range(200) if i != 57)


# -- failure policy -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ratio", "fails"), [(0.0, True), (0.09, True), (0.1, False), (0.2, False)])
def test_failure_policy_at_under_and_over_the_ratio(carecycle_emulator, tmp_path, ratio, fails):
    records = [crm(i) for i in range(9)] + [crm(9, phone="nope")]  # 1 of 10 rejected: ratio 0.1
    op = upload(tmp_path, records=records, max_rejected_ratio=ratio)
    if fails:
        with pytest.raises(AirflowFailException) as err:
            op.execute({})
        message = str(err.value)
        assert "1 of 10 lead records were rejected (10.00%)" in message
        assert str(tmp_path / "rejected.jsonl") in message
        assert "phoneNumber" in message
    else:
        assert op.execute({})["rejected"] == 1
    # either way every valid lead was uploaded and the rejected file written
    assert len(carecycle_emulator.get_customers_by_external_id()) >= 9
    assert set(rejected_rows(tmp_path)) == {10}


def test_auth_errors_fail_at_once(carecycle_emulator, carecycle_connection, tmp_path):
    carecycle_connection("carecycle_ro", host=carecycle_emulator.url, password="cc_readonly_key")
    op = upload(tmp_path, records=[crm(1)], carecycle_conn_id="carecycle_ro")
    with pytest.raises(CareCycleAuthError):
        op.execute({})


# -- dry run, PHI, sources ------------------------------------------------------------------------------------


def test_dry_run_sends_nothing_and_writes_the_rejected_file(carecycle_emulator, tmp_path):
    records = [crm(1), crm(2, phone="x")]
    result = upload(tmp_path, records=records, dry_run=True, max_rejected_ratio=0.5).execute({})

    assert carecycle_emulator.request_log() == []
    assert result == {**result, "dry_run": True, "uploaded": 0, "valid": 1, "rejected": 1, "batches": 1}
    assert set(rejected_rows(tmp_path)) == {2}


def test_logs_and_xcom_hold_no_record_contents(carecycle_emulator, tmp_path, captured_logs):
    records = [
        {**crm(1), "first": "Philomena", "last": "Wigglesworth", "dateOfBirth": "04-17-1948", "mbiNumber": "1EG4TE5K7"},
        {**crm(2), "phone": "917-555-01x3", "first": "Bartholomew", "dateOfBirth": "11/09/1951"},
        {**crm(3), "first": "Cornelius", "dateOfBirth": "1949-02-30"},
    ]
    op = upload(tmp_path, records=records, max_rejected_ratio=0.0)
    with pytest.raises(AirflowFailException) as err:
        op.execute({})
    result = upload(tmp_path, records=records[:1], max_rejected_ratio=0.0).execute({})

    text = captured_logs() + str(err.value) + json.dumps(result)
    assert "Lead upload" in text  # the summary line was captured
    for secret in (
        "Philomena",
        "Wigglesworth",
        "Bartholomew",
        "Cornelius",
        "04-17-1948",
        "1948-04-17",  # the normalised form (a bare "1948" also turns up in log timestamps)
        "11/09/1951",
        "1949-02-30",
        "1EG4TE5K7",
        "555-0001",
        "2125550001",
        "917-555-01x3",
        "10001-1234",
    ):
        assert secret not in text, secret


def write_source(path: Path, records: list[dict[str, Any]]) -> str:
    name = path.name
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "wt", newline="") as handle:
        if ".csv" in name:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
        elif ".jsonl" in name:
            handle.writelines(json.dumps(r) + "\n" for r in records)
        else:
            json.dump(records, handle)
    return str(path)


@pytest.mark.parametrize("name", ["leads.jsonl", "leads.jsonl.gz", "leads.json", "leads.csv.gz"])
def test_source_files_are_streamed_from_object_storage(carecycle_emulator, tmp_path, name):
    flat = [{"externalId": f"f-{i}", "phone": f"2125550{i:03d}", "zip": "10001", "veteran": "yes"} for i in range(25)]
    source = write_source(tmp_path / name, flat)
    op = upload(
        tmp_path,
        source_path=f"file://{source}",
        field_mapping={"phoneNumber": "phone", "postalCode": "zip"},
        batch_size=10,
    )
    result = op.execute({})

    assert result == {**result, "total": 25, "uploaded": 25, "batches": 3, "rejected": 0}
    stored = carecycle_emulator.get_customers_by_external_id()
    assert all(len(stored[f"f-{i}"]) == 1 for i in range(25))
    assert list(result) == SUMMARY_KEYS


# -- checkpoint and resume ------------------------------------------------------------------------------------


def test_a_retry_resumes_and_sends_no_acknowledged_batch_again(carecycle_emulator, tmp_path, monkeypatch):
    records = [crm(i) for i in range(50)]
    checkpoint = str(tmp_path / "state" / "checkpoint.json")
    op = upload(tmp_path, records=records, batch_size=10, max_in_flight=1, checkpoint_path=checkpoint)
    real_upload = op.hook.upload_lead_texts
    calls = {"n": 0}

    def crash_after_three(leads):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("worker lost")
        return real_upload(leads)

    monkeypatch.setattr(op.hook, "upload_lead_texts", crash_after_three)
    with pytest.raises(RuntimeError):
        op.execute({})
    first = [r["batch"]["fingerprint"] for r in upload_requests(carecycle_emulator)]
    assert len(first) == 3

    retry = upload(tmp_path, records=records, batch_size=10, max_in_flight=1, checkpoint_path=checkpoint)
    result = retry.execute({})

    assert result == {**result, "uploaded": 50, "skipped_batches": 3, "batches": 5, "rejected": 0}
    fingerprints = [r["batch"]["fingerprint"] for r in upload_requests(carecycle_emulator) if r["status"] == 200]
    assert len(fingerprints) == 5 == len(set(fingerprints))
    assert all(len(v) == 1 for v in carecycle_emulator.get_customers_by_external_id().values())


def test_a_changed_input_starts_afresh(carecycle_emulator, tmp_path):
    checkpoint = str(tmp_path / "checkpoint.json")
    upload(tmp_path, records=[crm(i) for i in range(20)], batch_size=10, checkpoint_path=checkpoint).execute({})
    changed = [crm(i) for i in range(20)]
    changed[0]["first"] = "Changed"
    result = upload(tmp_path, records=changed, batch_size=10, checkpoint_path=checkpoint).execute({})

    assert (result["skipped_batches"], result["uploaded"]) == (0, 20)
    assert len(upload_requests(carecycle_emulator)) == 4
    assert json.loads(Path(checkpoint).read_text())["done"] == [0, 1]


# -- a real DAG run: records from an upstream task's XCom -----------------------------------------------------

DAG_FILE = """
from __future__ import annotations

import json
from datetime import datetime, timezone

from airflow import DAG

from airflow_provider_carecycle._compat import BaseOperator
from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator


class ProduceLeads(BaseOperator):
    def execute(self, context):
        return [
            {{"externalId": "dag-1", "phoneNumber": "(212) 555-0101", "postalCode": "10001", "firstName": "Octavia"}},
            {{"externalId": "dag-2", "phoneNumber": "212.555.0102", "postalCode": "10001", "firstName": "Ignatius"}},
        ]


class Record(BaseOperator):
    def execute(self, context):
        ti = context["ti"]
        with open({out!r}, "w") as out:
            json.dump({{"xcom": ti.xcom_pull(task_ids="upload")}}, out)


with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    produce = ProduceLeads(task_id="produce")
    upload = CareCycleUploadLeadsOperator(
        task_id="upload", records=produce.output, rejected_path={rejected!r} + "/{{{{ ds }}}}.jsonl"
    )
    upload >> Record(task_id="record")
"""


@pytest.mark.airflow_dag
def test_records_from_an_upstream_xcom_in_a_real_dag_run(carecycle_emulator, tmp_path, run_dag_file):
    out = tmp_path / "out.json"
    dag_run = run_dag_file(DAG_FILE.format(dag_id="upload_leads_from_xcom", out=str(out), rejected=str(tmp_path)))

    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert all(state.endswith("success") for state in states.values()), states
    seen = json.loads(out.read_text())
    assert seen["xcom"]["uploaded"] == 2
    assert "Octavia" not in json.dumps(seen)
    from airflow.models.renderedtifields import RenderedTaskInstanceFields

    (upload_ti,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "upload"]
    rendered = RenderedTaskInstanceFields.get_templated_fields(upload_ti)
    assert rendered["records"] == "<2 records, not shown: they may hold patient data>"
    assert rendered["rejected_path"].endswith(".jsonl") and "{{" not in rendered["rejected_path"]
    stored = carecycle_emulator.get_customers_by_external_id()
    assert stored["dag-1"][0]["phoneNumber"] == "+12125550101"
    assert any(p.suffix == ".jsonl" for p in tmp_path.iterdir())


def test_dry_run_leaves_airflows_own_dry_run_method_alone(carecycle_emulator, tmp_path):
    """``dry_run=True`` once replaced BaseOperator.dry_run() (render templates, run nothing) with a bool."""
    op = upload(tmp_path, records=[crm(1)], dry_run=True)

    assert callable(op.dry_run)
    op.dry_run()  # Airflow's own: logs the rendered template fields, sends nothing
    summary = op.execute({})

    assert summary["dry_run"] is True and summary["uploaded"] == 0
    assert upload_requests(carecycle_emulator) == []
