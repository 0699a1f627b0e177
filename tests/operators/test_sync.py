"""Stateful sync (``sync_state_path``) over real HTTP against the careCycle emulator, including a crash test."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import random
import signal
import sqlite3
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_carecycle.leads import LeadValidator
from airflow_provider_carecycle.operators import leads as leads_operators
from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator
from airflow_provider_carecycle.sync.engine import LeadUploader
from airflow_provider_carecycle.sync.ledger import SyncLedger
from airflow_provider_carecycle.sync.spool import lead_text
from airflow_provider_carecycle.transfers.sql import SqlToCareCycleLeadsOperator
from carecycle_emulator.pytest_plugin import carecycle_connection_json

MAPPING = {"phoneNumber": "phone", "postalCode": "zip", "firstName": "first"}


def crm(i: int, version: int = 1, **extra: Any) -> dict[str, Any]:
    return {"externalId": f"s-{i}", "phone": f"(212) 555-{i:04d}", "first": f"V{version}-{i}", "zip": "10001", **extra}


def feed(ids: range | list[int], version: int = 1) -> list[dict[str, Any]]:
    return [crm(i, version) for i in ids]


def upload(tmp_path: Path, records: list[dict[str, Any]], **kwargs: Any) -> CareCycleUploadLeadsOperator:
    kwargs.setdefault("sync_state_path", str(tmp_path / "ledger"))
    kwargs.setdefault("field_mapping", MAPPING)
    return CareCycleUploadLeadsOperator(task_id="sync", records=records, **kwargs)


def sent_sizes(emu: Any) -> list[int]:
    return [e["batch"]["size"] for e in emu.request_log() if e["path"] == "/v2/leads/upload" and e["status"] == 200]


def stored_first_names(emu: Any) -> dict[str, str]:
    return {ext: customers[-1]["firstName"] for ext, customers in emu.get_customers_by_external_id().items()}


def balanced(result: dict[str, Any]) -> bool:
    return result["total"] == result["uploaded"] + result["rejected"] + result["duplicates"] + result["unchanged"]


def test_a_second_run_sends_only_new_and_changed_leads(carecycle_emulator, tmp_path):
    first = upload(tmp_path, feed(range(30)), batch_size=10).execute({})
    assert (first["uploaded"], first["unchanged"], sent_sizes(carecycle_emulator)) == (30, 0, [10, 10, 10])

    records = feed(range(32))  # two new leads
    records[4] = crm(4, version=2)  # one changed lead
    records.append(crm(7))  # a duplicate of an unchanged lead stays a duplicate
    second = upload(tmp_path, records, batch_size=10).execute({})

    assert second == {**second, "total": 33, "uploaded": 3, "unchanged": 29, "duplicates": 1, "batches": 1}
    assert balanced(second)
    assert sent_sizes(carecycle_emulator)[3:] == [3]
    assert stored_first_names(carecycle_emulator)["s-4"] == "V2-4"

    third = upload(tmp_path, records, batch_size=10).execute({})
    assert (third["uploaded"], third["unchanged"], third["batches"]) == (0, 32, 0)
    assert len(sent_sizes(carecycle_emulator)) == 4


def test_leads_careCycle_rejected_are_tried_again(carecycle_emulator, tmp_path):
    records = feed(range(5))
    records[2]["sourceId"] = "no-such-source"  # careCycle answers a per-record error for it
    result = upload(tmp_path, records, max_rejected_ratio=0.5).execute({})
    assert (result["uploaded"], result["rejected"]) == (4, 1)

    again = upload(tmp_path, records, max_rejected_ratio=0.5).execute({})
    assert (again["uploaded"], again["rejected"], again["unchanged"]) == (0, 1, 4)
    assert balanced(again)
    assert sent_sizes(carecycle_emulator)[-1] == 1


@pytest.mark.parametrize("full_sync", [True, "true", " True "])
def test_full_sync_sends_everything_and_rewrites_the_ledger(carecycle_emulator, tmp_path, full_sync):
    upload(tmp_path, feed(range(6))).execute({})
    result = upload(tmp_path, feed(range(4)), full_sync=full_sync).execute({})
    assert (result["uploaded"], result["unchanged"]) == (4, 0)
    after = upload(tmp_path, feed(range(6))).execute({})
    assert (after["uploaded"], after["unchanged"]) == (2, 4)  # leads 4 and 5 left the ledger with the full sync


def _age_ledger(folder: Path, seconds: int) -> None:
    for path in folder.glob("ledger-*.sqlite"):
        db = sqlite3.connect(path)
        db.execute("UPDATE entries SET ts = ts - ?", (seconds,))
        db.commit()
        db.close()


def test_resend_after_sends_again_what_was_accepted_too_long_ago(carecycle_emulator, tmp_path):
    upload(tmp_path, feed(range(5))).execute({})
    _age_ledger(tmp_path / "ledger", 2 * 3600)
    fresh = upload(tmp_path, feed(range(5)), resend_after=timedelta(hours=3)).execute({})
    assert (fresh["uploaded"], fresh["unchanged"]) == (0, 5)
    stale = upload(tmp_path, feed(range(5)), resend_after=3600).execute({})
    assert (stale["uploaded"], stale["unchanged"]) == (5, 0)


def test_another_destination_starts_empty(carecycle_emulator, tmp_path, monkeypatch):
    upload(tmp_path, feed(range(5))).execute({})
    other_url = carecycle_emulator.url.replace("127.0.0.1", "localhost")
    connection = json.loads(carecycle_connection_json(carecycle_emulator))
    monkeypatch.setenv("AIRFLOW_CONN_CARECYCLE_DEFAULT", json.dumps({**connection, "host": other_url}))
    result = upload(tmp_path, feed(range(5))).execute({})
    assert (result["uploaded"], result["unchanged"]) == (5, 0)


def test_dry_run_neither_reads_nor_writes_the_ledger(carecycle_emulator, tmp_path):
    result = upload(tmp_path, feed(range(3)), dry_run=True).execute({})
    assert (result["unchanged"], result["uploaded"]) == (0, 0)
    assert not (tmp_path / "ledger").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resend_after": "1 day"}, "resend_after must be a timedelta or a number of seconds"),
        ({"resend_after": -5}, "resend_after must be a positive duration"),
    ],
)
def test_constructor_rejects_a_bad_resend_after(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CareCycleUploadLeadsOperator(task_id="t", records=[], **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"full_sync": "yes please"}, "full_sync must be True or False"),
        ({"sync_state_path": 42}, "sync_state_path must be a folder URI or path"),
        ({"sync_state_path": " "}, "sync_state_path rendered to an empty string"),
    ],
)
def test_templated_arguments_are_checked_when_the_task_runs(carecycle_emulator, tmp_path, kwargs, message):
    op = upload(tmp_path, feed(range(2)), **kwargs)  # assigned as given: a template may still render them
    with pytest.raises(ValueError, match=message):
        op.execute({})
    assert sent_sizes(carecycle_emulator) == []


def test_every_lead_upload_operator_has_the_sync_arguments():
    op = SqlToCareCycleLeadsOperator(
        task_id="t", sql="SELECT 1", sql_conn_id="x", sync_state_path="s3://b/{{ ds }}", full_sync="{{ params.f }}"
    )
    assert {"sync_state_path", "full_sync"} <= set(op.template_fields)
    assert (op.sync_state_path, op.full_sync) == ("s3://b/{{ ds }}", "{{ params.f }}")


# -- with the checkpoint, and when the worker dies ----------------------------------------------------------------


def _upload_in_child(
    tmp_path: str, version: int, kill_after_answers: int | None, kill_in_save: bool, save_every_s: float = 0.0
) -> None:
    """The task process: upload 40 leads in batches of 5 with a checkpoint and a ledger, maybe dying midway.

    The ledger is saved every ``save_every_s`` (0: after every answer), so a kill finds it holding part of the run.
    """
    op = CareCycleUploadLeadsOperator(
        task_id="sync",
        records=feed(range(40), version),
        field_mapping=MAPPING,
        batch_size=5,
        max_in_flight=2,
        checkpoint_path=f"{tmp_path}/checkpoint-v{version}.json",
        sync_state_path=f"{tmp_path}/ledger",
    )
    real = op.hook.upload_lead_texts
    answers = {"n": 0}

    def upload_lead_texts(leads: list[str]) -> dict[str, Any]:
        answer = real(leads)
        answers["n"] += 1
        if kill_after_answers is not None and answers["n"] >= kill_after_answers:
            os.kill(os.getpid(), signal.SIGKILL)  # careCycle has the batch; the worker never hears of it
        return answer

    op.hook.upload_lead_texts = upload_lead_texts
    # the forked task process only: its uploads save the ledger every save_every_s
    leads_operators.LeadUploader = functools.partial(LeadUploader, ledger_save_every_s=save_every_s)  # type: ignore[misc]
    if kill_in_save:
        real_replace = os.replace

        def replace(source: str, target: str) -> None:
            if os.path.basename(str(target)).startswith("ledger-"):
                os.kill(os.getpid(), signal.SIGKILL)  # the new ledger file is written under its temporary name
            real_replace(source, target)

        os.replace = replace  # type: ignore[assignment]  # the forked task process only
    op.execute({})


def _in_child(*args: Any) -> multiprocessing.Process:
    process = multiprocessing.get_context("fork").Process(target=_upload_in_child, args=args)
    process.start()
    return process


def _ledger_says_sent(tmp_path: Path, version: int, destination: str) -> list[int]:
    validator = LeadValidator(MAPPING)
    leads = [validator.validate(record).lead for record in feed(range(40), version)]
    with SyncLedger(str(tmp_path / "ledger"), destination=destination) as ledger:
        rows = [
            (i, *ledger.hasher(validator.identity(lead), lead_text(lead)))
            for i, lead in enumerate(leads)
            if lead is not None
        ]
        return list(ledger.unchanged(rows))


def _destination() -> str:
    return CareCycleUploadLeadsOperator(task_id="d", records=[]).hook.destination_id


def test_a_resumed_runs_settled_batches_enter_the_ledger(carecycle_emulator, tmp_path):
    child = _in_child(str(tmp_path), 1, 3, False, 3600.0)  # dies after the third answer; no ledger save yet
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert not (tmp_path / "ledger").exists()  # the ledger is written when the run ends: it never was

    op = upload(
        tmp_path,
        feed(range(40)),
        batch_size=5,
        checkpoint_path=str(tmp_path / "checkpoint-v1.json"),
    )
    resumed = op.execute({})
    assert resumed["skipped_batches"] >= 2 and resumed["uploaded"] == 40 and resumed["unchanged"] == 0
    assert sorted(_ledger_says_sent(tmp_path, 1, _destination())) == list(range(40))

    again = upload(tmp_path, feed(range(40)), batch_size=5).execute({})
    assert (again["uploaded"], again["unchanged"]) == (0, 40)


def test_a_worker_killed_at_random_points_never_marks_an_unsent_lead_as_sent(carecycle_emulator, tmp_path):
    """Each round changes every lead, then kills the task at a random moment (or after a random answer, when
    careCycle has the batch but the worker does not know). Whatever the ledger holds as sent must be in careCycle
    exactly so."""
    destination = _destination()
    carecycle_emulator.configure(latency_ms=40)
    rng = random.Random(1313)
    checked = killed = 0
    for version in range(1, 10):
        if version % 3 == 1:  # at a random moment
            child = _in_child(str(tmp_path), version, None, False)
            time.sleep(rng.uniform(0.0, 0.6))
            if child.is_alive():
                os.kill(child.pid, signal.SIGKILL)
        elif version % 3 == 2:  # after a random answer, before the worker records it
            child = _in_child(str(tmp_path), version, rng.randint(1, 8), False)
        else:  # while writing the ledger
            child = _in_child(str(tmp_path), version, None, True)
        child.join(60)
        assert child.exitcode is not None
        killed += child.exitcode == -signal.SIGKILL

        stored = stored_first_names(carecycle_emulator)
        marked = _ledger_says_sent(tmp_path, version, destination)
        for i in marked:
            assert stored.get(f"s-{i}") == f"V{version}-{i}", f"lead {i} marked sent at version {version}"
        checked += len(marked)

        finish = upload(tmp_path, feed(range(40), version), batch_size=5, max_in_flight=2).execute({})
        assert balanced(finish) and finish["uploaded"] + finish["unchanged"] == 40
        assert all(stored_first_names(carecycle_emulator)[f"s-{i}"] == f"V{version}-{i}" for i in range(40))
        assert sorted(_ledger_says_sent(tmp_path, version, destination)) == list(range(40))
    assert killed >= 6  # every round but (maybe) those killed at a random moment died before the end
    assert checked  # and some died after the ledger held leads of their version
