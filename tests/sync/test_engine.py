"""The lead upload engine's edge cases that the emulator cannot produce, with a small in-process stub API."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_carecycle.exceptions import CareCycleServerError, CareCycleValidationError
from airflow_provider_carecycle.leads import LeadValidator, Rejection
from airflow_provider_carecycle.sync.engine import LeadUploader, UnsettledBatchError, check_upload_options
from airflow_provider_carecycle.sync.summary import UploadSummary
from tests.sync.test_summary import KEYS as SUMMARY_KEYS


class StubHook:
    """Answers uploads like careCycle: 400 for ``city="BAD"`` records, a per-record error for ``city="NOSOURCE"``.

    :param names_offenders: answer 400 with ``failedRecords``/paths (True) or with a bare 400 (False).
    :param fail_after: answer every request after this many with a 503 that retries could not get past.
    """

    destination_id = "stub-api"

    def __init__(self, *, names_offenders: bool = True, fail_after: int | None = None) -> None:
        self.names_offenders = names_offenders
        self.fail_after = fail_after
        self.sent: list[list[str]] = []
        self.accepted: list[str] = []
        self.lock = threading.Lock()

    def upload_lead_texts(self, texts: list[str]) -> dict[str, Any]:
        records = [json.loads(text) for text in texts]
        with self.lock:
            if self.fail_after is not None and len(self.sent) >= self.fail_after:
                raise CareCycleServerError("careCycle API POST /v2/leads/upload: retries exhausted.", status=503)
            self.sent.append([r.get("externalId") for r in records])
            bad = [i for i, r in enumerate(records) if r.get("city") == "BAD"]
            if bad:
                named = self.names_offenders
                raise CareCycleValidationError(
                    "careCycle API POST /v2/leads/upload: request rejected (400 VALIDATION_ERROR).",
                    status=400,
                    code="VALIDATION_ERROR",
                    errors=[
                        {"path": ["records", i, "city"], "message": "Invalid city", "code": "invalid_string"}
                        for i in bad
                    ]
                    if named
                    else [],
                    failed_records=[{"index": i} for i in bad] if named else [],
                )
            failed = [r for r in records if r.get("city") == "NOSOURCE"]
            self.accepted.extend(r.get("externalId") for r in records if r.get("city") != "NOSOURCE")
            return {
                "succeeded": len(records) - len(failed),
                "failed": len(failed),
                "errors": [{"externalId": r.get("externalId"), "error": "Source not found"} for r in failed],
            }


def lead(i: int, city: str = "Albany", with_id: bool = True) -> dict[str, Any]:
    record = {"phoneNumber": f"212555{i:04d}", "postalCode": "10001", "city": city}
    if with_id:
        record["externalId"] = f"e{i}"
    return record


def run(hook: Any, records: list[dict[str, Any]], tmp_path: Path, **kwargs: Any) -> UploadSummary:
    kwargs.setdefault("rejected_path", str(tmp_path / "rejected.jsonl"))
    return LeadUploader(hook, LeadValidator(), **kwargs).run(records)


def rejected(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "rejected.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("batch_size", "max_in_flight"), [(0, 1), (201, 1), (True, 1), (10, 0), (10, 33), (10, 1.5)])
def test_upload_options_are_checked(batch_size, max_in_flight):
    with pytest.raises(ValueError, match="must be an integer"):
        check_upload_options(batch_size, max_in_flight)


def test_bisection_isolates_offenders_when_the_api_names_none(tmp_path):
    hook = StubHook(names_offenders=False)
    records = [lead(i, city="BAD" if i in (5, 11) else "Albany") for i in range(16)]

    summary = run(hook, records, tmp_path, batch_size=16, max_in_flight=1)

    assert (summary.uploaded, summary.rejected, summary.total) == (14, 2, 16)
    assert sorted(hook.accepted) == sorted(f"e{i}" for i in range(16) if i not in (5, 11))
    assert sorted(r["row"] for r in rejected(tmp_path)) == [6, 12]
    assert all(r["stage"] == "api" and r["code"] == "api_validation_error" for r in rejected(tmp_path))
    assert len(hook.sent) < 16  # bisection, not one request per record


def test_named_offenders_are_removed_in_one_step(tmp_path):
    hook = StubHook(names_offenders=True)
    records = [lead(i, city="BAD" if i in (2, 7) else "Albany") for i in range(10)]

    summary = run(hook, records, tmp_path, batch_size=10)

    assert (summary.uploaded, summary.rejected) == (8, 2)
    assert [len(s) for s in hook.sent] == [10, 8]
    reasons = {r["row"]: r["reason"] for r in rejected(tmp_path)}
    assert reasons == {3: "API: city: invalid_string", 8: "API: city: invalid_string"}  # the rule, not the message


def test_per_record_errors_without_external_id_are_matched_when_unambiguous(tmp_path):
    hook = StubHook()
    records = [lead(1), lead(2, city="NOSOURCE", with_id=False)]

    summary = run(hook, records, tmp_path)

    assert (summary.uploaded, summary.rejected) == (1, 1)
    (entry,) = rejected(tmp_path)
    assert (entry["row"], entry["reason"]) == (2, "API: Source not found")


def test_errors_that_cannot_be_tied_to_a_record_leave_the_batch_unsettled(tmp_path):
    hook = StubHook()
    records = [lead(1, city="NOSOURCE", with_id=False), lead(2, city="NOSOURCE", with_id=False)]
    checkpoint = tmp_path / "cp.json"

    with pytest.raises(UnsettledBatchError, match="cannot be tied to a lead sent") as err:
        run(hook, records, tmp_path, checkpoint_path=str(checkpoint))

    assert (err.value.batch, err.value.unsettled) == (0, 2)
    assert json.loads(checkpoint.read_text())["done"] == []
    assert not (tmp_path / "rejected.jsonl").exists()  # never a rejection with "row": null


def test_a_failure_stops_the_run_after_in_flight_batches_are_checkpointed(tmp_path):
    hook = StubHook(fail_after=3)
    checkpoint = str(tmp_path / "cp.json")
    records = [lead(i) for i in range(60)]

    with pytest.raises(CareCycleServerError):
        run(hook, records, tmp_path, batch_size=10, max_in_flight=2, checkpoint_path=checkpoint)
    assert len(json.loads(Path(checkpoint).read_text())["done"]) == 3
    assert not (tmp_path / "rejected.jsonl").exists()  # never a half-written rejected file

    retry = StubHook()
    summary = run(retry, records, tmp_path, batch_size=10, max_in_flight=2, checkpoint_path=checkpoint)

    assert (summary.uploaded, summary.skipped_batches, len(retry.sent)) == (60, 3, 3)
    assert sorted(hook.accepted + retry.accepted) == sorted(f"e{i}" for i in range(60))


def test_a_partly_settled_batch_resends_only_its_unsettled_records(tmp_path):
    records = [lead(i, city="NOSOURCE" if i == 1 else "Albany") for i in range(4)]
    checkpoint = str(tmp_path / "cp.json")
    first = StubHook()
    run(first, records, tmp_path, batch_size=4, checkpoint_path=checkpoint)
    state = json.loads(Path(checkpoint).read_text())
    # rewrite the checkpoint as if the run had died after settling positions 0 and 1 only
    state["done"], state["partial"] = [], {"0": [0, 1]}
    Path(checkpoint).write_text(json.dumps(state))

    retry = StubHook()
    summary = run(retry, records, tmp_path, batch_size=4, checkpoint_path=checkpoint)

    assert retry.sent == [["e2", "e3"]]
    assert (summary.uploaded, summary.rejected, summary.skipped_batches) == (3, 1, 0)
    assert [e["row"] for e in rejected(tmp_path)] == [2]


def test_the_checkpoint_stores_a_rejection_in_the_json_form_of_the_rejected_file(tmp_path):
    records = [lead(i, city="NOSOURCE" if i == 2 else "Albany") for i in range(4)]
    checkpoint = tmp_path / "cp.json"
    run(StubHook(), records, tmp_path, batch_size=4, checkpoint_path=str(checkpoint))

    (stored,) = json.loads(checkpoint.read_text())["rejected"]["0"]
    (entry,) = rejected(tmp_path)
    refused = Rejection(None, "API: Source not found", "api_error", position=2)
    assert entry["errors"] == [stored] and stored == refused.to_json()
    assert (entry["stage"], entry["row"], entry["batch"], entry["record"]) == ("api", 3, 0, records[2])
    assert Rejection.from_json(stored) == refused


def test_summary_accounts_for_every_record(tmp_path):
    hook = StubHook()
    records = [lead(1), lead(1), {"phoneNumber": "bad"}, lead(2, city="NOSOURCE"), lead(3)]
    summary = run(hook, records, tmp_path)
    assert summary.total == summary.uploaded + summary.rejected + summary.duplicates + summary.unchanged == 5
    assert list(summary.as_dict()) == SUMMARY_KEYS
    assert summary.as_dict()["top_reasons"] == [[reason, count] for reason, count in summary.top_reasons()]
    assert len(summary.as_dict()["top_reasons"]) == summary.rejected


# -- issue 23: invalid optional fields, and one lead per number however it is written ----------------------------


def test_an_invalid_email_is_dropped_counted_and_written_as_a_warning_line(tmp_path):
    hook = StubHook()
    records = [
        {**lead(0), "email": "jane,doe@example.com"},
        {**lead(1), "email": "ok@example.com"},
        {**lead(2), "email": "a..b@example.com", "gender": "robot"},
        {**lead(3, with_id=False), "phoneNumber": "(911) 555-0142", "email": "x@example..com"},
    ]

    summary = run(hook, records, tmp_path, batch_size=10)

    assert (summary.total, summary.uploaded, summary.rejected) == (4, 3, 1)
    assert summary.as_dict()["fields_dropped"] == {
        "email: not a valid e-mail address (syntax checked by email-validator)": 2,
        "gender: not an allowed value; expected one of: Male, Female, Non-Binary, Other, Prefer Not to Say": 1,
    }
    assert sorted(hook.accepted) == ["e0", "e1", "e2"]
    lines = rejected(tmp_path)
    assert [(line["stage"], line["row"], line["field"]) for line in lines] == [
        ("warning", 1, "email"),
        ("warning", 3, "email"),
        ("validation", 4, "phoneNumber"),
    ]
    assert [e["field"] for e in lines[1]["errors"]] == ["email", "gender"]
    assert lines[0]["record"]["email"] == "jane,doe@example.com"  # the rejected file keeps the record as it was
    assert "jane" not in json.dumps(summary.as_dict())


def test_invalid_optional_reject_counts_no_drop(tmp_path):
    records = [{**lead(0), "email": "jane,doe@example.com"}]
    summary = LeadUploader(
        StubHook(), LeadValidator(invalid_optional="reject"), rejected_path=str(tmp_path / "rejected.jsonl")
    ).run(records)
    assert (summary.uploaded, summary.rejected, summary.as_dict()["fields_dropped"]) == (0, 1, {})
    assert [line["stage"] for line in rejected(tmp_path)] == ["validation"]


WRITTEN_FORMS = [
    "(212) 555-0142",
    "+1 212 555 0142",
    "212/555-0142 x12",
    "tel:+1-212-555-0142",
    "\uff12\uff11\uff12\uff15\uff15\uff15\uff10\uff11\uff14\uff12",
    "\u0662\u0661\u0662\u0665\u0665\u0665\u0660\u0661\u0664\u0662",
]


def test_every_written_form_of_one_number_is_one_lead(tmp_path):
    hook = StubHook()
    records = [
        {"phoneNumber": form, "postalCode": "10001", "firstName": f"v{n}"} for n, form in enumerate(WRITTEN_FORMS)
    ]

    summary = run(hook, records, tmp_path)

    assert (summary.valid, summary.duplicates, summary.uploaded) == (6, 5, 1)
    [[sent]] = hook.sent
    assert sent is None  # no externalId: identified by the number


def test_the_ledger_hash_is_the_e164_forms_so_a_number_written_another_way_is_unchanged(tmp_path):
    ledger = str(tmp_path / "ledger")
    first = run(StubHook(), [{"externalId": "e1", "phoneNumber": WRITTEN_FORMS[0], "postalCode": "10001"}], tmp_path,
                sync_state_path=ledger)  # fmt: skip
    assert first.uploaded == 1
    for form in WRITTEN_FORMS[1:]:
        again = run(StubHook(), [{"externalId": "e1", "phoneNumber": form, "postalCode": "10001"}], tmp_path,
                    sync_state_path=ledger)  # fmt: skip
        assert (again.unchanged, again.uploaded) == (1, 0), form
