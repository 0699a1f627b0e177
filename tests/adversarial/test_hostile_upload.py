"""Lead upload against a hostile server in front of the emulator: nothing counts as uploaded that careCycle did not
accept (issue 10, upload accounting).

Every upload here goes through the real :class:`CareCycleHook` over real HTTP to a :class:`HostileServer` that either
answers itself or forwards to the emulator, and the outcome is checked against the leads the emulator stored.
"""

from __future__ import annotations

import json
import os
import random
import stat
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_carecycle.exceptions import CareCycleMalformedAnswerError
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
from airflow_provider_carecycle.hooks.ratelimit import forget_shared_limiters
from airflow_provider_carecycle.leads import LeadValidator
from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator
from airflow_provider_carecycle.sync.engine import LeadUploader, UnsettledBatchError
from airflow_provider_carecycle.sync.spool import LeadItem, LeadSpool
from airflow_provider_carecycle.sync.summary import UploadSummary
from carecycle_emulator import TEST_API_KEY
from carecycle_emulator.phones import us_phone
from tests.adversarial.hostile_server import (
    Forward,
    ForwardThenDrop,
    ForwardThenReply,
    HostileServer,
    Recorded,
    Redirect,
    Reply,
)

UPLOAD = "/v2/leads/upload"


# -- helpers ---------------------------------------------------------------------------------------------------


def leads(n: int, prefix: str = "h", **fields: Any) -> list[dict[str, Any]]:
    """``n`` valid leads with distinct phones and externalIds ``{prefix}-{i}``."""
    return [
        {
            "externalId": f"{prefix}-{i}",
            "phoneNumber": us_phone(i),
            "postalCode": "33101",
            **fields,
        }
        for i in range(n)
    ]


def hook_for(carecycle_connection: Any, server: HostileServer, conn_id: str = "carecycle_hostile", **extra: Any):
    """A real hook whose connection points at ``server`` (fast retries, no client-side waiting)."""
    conn_id = carecycle_connection(
        conn_id, host=server.url, password=TEST_API_KEY, extra={"requests_per_minute": 6000, **extra}
    )
    return CareCycleHook(conn_id, retry_backoff=0.01, rate_limit_window=1.0)


def run(hook: Any, records: list[dict[str, Any]], tmp_path: Path, **kwargs: Any) -> UploadSummary:
    kwargs.setdefault("rejected_path", str(tmp_path / "rejected.jsonl"))
    return LeadUploader(hook, LeadValidator(), **kwargs).run(records)


def uploads(server: HostileServer) -> list[Recorded]:
    return [r for r in server.requests if r.path.split("?")[0] == UPLOAD]


def stored(emu: Any, prefix: str = "h") -> set[str]:
    """The externalIds of the leads the emulator holds (the ones ``leads(prefix=...)`` made)."""
    return {eid for eid in emu.get_customers_by_external_id() if eid and eid.startswith(f"{prefix}-")}


def state(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def accepting(request: Recorded) -> Reply | None:
    """A fake careCycle that accepts every upload without storing anything (a staging stand-in)."""
    if request.path.split("?")[0] != UPLOAD:
        return None
    return Reply(200, {"succeeded": len(request.json()["records"]), "failed": 0, "errors": []})


# -- the hostile server's upload actions -----------------------------------------------------------------------


def test_forward_then_reply_and_forward_then_drop_let_the_emulator_act(hostile_server, carecycle_emulator):
    import requests

    server = hostile_server(upstream=carecycle_emulator.url)
    server.queue(ForwardThenReply(Reply(200, {})), ForwardThenDrop(sent=4))
    body = {"records": [{"phoneNumber": "+12125550101", "postalCode": "10001", "externalId": "h-1"}]}
    key = {"x-api-key": TEST_API_KEY}
    assert requests.post(f"{server.url}{UPLOAD}", json=body, headers=key).json() == {}
    body["records"][0]["externalId"] = "h-2"
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.post(f"{server.url}{UPLOAD}", json=body, headers=key)
    assert [r.upstream_status for r in server.requests] == [200, 200]
    assert stored(carecycle_emulator) == {"h-1", "h-2"}


# -- 1. an answer that does not account for every record sent ---------------------------------------------------

UNACCOUNTABLE = {
    "empty object": {},
    "json null": b"null",
    "empty body": None,
    "a list": [{"succeeded": 5}],
    "failed missing": {"succeeded": 5, "errors": []},
    "too few succeeded": {"succeeded": 4, "failed": 0, "errors": []},
    "too many succeeded": {"succeeded": 6, "failed": 0, "errors": []},
    "negative failed": {"succeeded": 6, "failed": -1, "errors": []},
    "float counts": {"succeeded": 5.0, "failed": 0, "errors": []},
    "string counts": {"succeeded": "5", "failed": "0", "errors": []},
    "boolean counts": {"succeeded": True, "failed": False, "errors": []},
    "failed without errors": {"succeeded": 3, "failed": 2, "errors": []},
    "too few errors": {"succeeded": 3, "failed": 2, "errors": [{"id": None, "externalId": "h-1", "error": "x"}]},
    "errors not a list": {"succeeded": 5, "failed": 0, "errors": "none"},
    "error not an object": {"succeeded": 4, "failed": 1, "errors": ["h-1"]},
}


@pytest.mark.parametrize("answer", list(UNACCOUNTABLE.values()), ids=list(UNACCOUNTABLE))
def test_an_answer_that_does_not_account_for_every_record_leaves_the_batch_unsettled(
    answer, hostile_server, carecycle_emulator, carecycle_connection, tmp_path
):
    server = hostile_server(upstream=carecycle_emulator.url)
    # careCycle stores the leads, but its answer does not say what became of each of them
    server.queue(ForwardThenReply(Reply(200, answer)))
    checkpoint = tmp_path / "checkpoint.json"
    records = leads(5)

    # an empty body is refused by the transport already (no JSON where JSON is required); the rest by the engine
    expected: tuple[type[Exception], str] = (
        (CareCycleMalformedAnswerError, "empty body where JSON is required")
        if answer is None
        else (UnsettledBatchError, r"Batch 0: careCycle's answer .* does not account for")
    )
    with pytest.raises(expected[0], match=expected[1]) as err:
        run(hook_for(carecycle_connection, server), records, tmp_path, batch_size=5, checkpoint_path=str(checkpoint))

    assert answer is None or "5 leads" in str(err.value)
    assert "h-" not in str(err.value)
    assert (state(checkpoint)["done"], state(checkpoint)["partial"]) == ([], {})  # nothing settled
    assert not (tmp_path / "rejected.jsonl").exists()

    summary = run(hook_for(carecycle_connection, server), records, tmp_path, checkpoint_path=str(checkpoint))

    assert (summary.uploaded, summary.rejected, summary.skipped_batches) == (5, 0, 0)
    assert len(uploads(server)) == 2  # the batch was sent again: it was never counted as uploaded
    assert stored(carecycle_emulator) == {f"h-{i}" for i in range(5)}


def test_an_accountable_answer_with_per_record_errors_still_rejects_those_records(
    hostile_server, carecycle_emulator, carecycle_connection, tmp_path
):
    server = hostile_server(upstream=carecycle_emulator.url)
    records = leads(4)
    records[2]["sourceId"] = "no-such-source"

    summary = run(hook_for(carecycle_connection, server), records, tmp_path, batch_size=4)

    assert (summary.uploaded, summary.rejected) == (3, 1)
    (entry,) = [json.loads(line) for line in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert (entry["stage"], entry["row"], entry["reason"]) == ("api", 3, "API: Source not found")
    assert stored(carecycle_emulator) == {"h-0", "h-1", "h-3"}


class DictStateStore:
    """``context["task_state_store"]`` as Airflow 3.3 gives it (get/set/delete of JSON values), in memory."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.values[key])) if key in self.values else default

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.values[key] = json.loads(json.dumps(value))

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def test_an_api_reason_that_echoes_the_value_never_reaches_the_task_state_store(
    hostile_server, carecycle_connection, tmp_path
):
    """careCycle's per-record ``error`` is free text that may quote the rejected value: the rejected file (the one
    place for PHI) keeps it, Airflow's task state store (a metadata DB row shown in the UI) never does."""
    from airflow_provider_carecycle.sync.state_store import TaskStateCheckpointStore

    echoed = "Invalid phone number 2005550002 for Jane Doe"
    answer = {"succeeded": 3, "failed": 1, "errors": [{"id": None, "externalId": "h-2", "error": echoed}]}
    server = hostile_server(script=lambda request: Reply(200, answer) if request.path == UPLOAD else None)
    store = DictStateStore()
    checkpoint = TaskStateCheckpointStore(store, max_value_bytes=0, retention="forever")

    summary = run(hook_for(carecycle_connection, server), leads(4), tmp_path, batch_size=4, checkpoint_path=checkpoint)

    assert (summary.uploaded, summary.rejected) == (3, 1)
    assert "Jane Doe" not in json.dumps(store.values) and "2005550002" not in json.dumps(store.values)
    assert store.values  # the checkpoint is there, with the rejection's position and code
    (entry,) = [json.loads(line) for line in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert entry["reason"] == f"API: {echoed}"  # the rejected file keeps careCycle's reason

    # a retry resumes from the store: nothing is sent again, and the rejection is still accounted for
    sent = len(uploads(server))
    again = run(hook_for(carecycle_connection, server), leads(4), tmp_path, batch_size=4, checkpoint_path=checkpoint)
    assert (again.uploaded, again.rejected, len(uploads(server))) == (3, 1, sent)
    assert "Jane Doe" not in (tmp_path / "rejected.jsonl").read_text()


# -- 2. a per-record error that names no record sent -------------------------------------------------------------

UNRESOLVED = {
    "unknown externalId": (
        leads(5),
        {"succeeded": 4, "failed": 1, "errors": [{"id": None, "externalId": "not-sent", "error": "Source not found"}]},
    ),
    "no externalId, several leads without one": (
        [{k: v for k, v in r.items() if k != "externalId"} for r in leads(5)],
        {"succeeded": 4, "failed": 1, "errors": [{"id": None, "externalId": None, "error": "Source not found"}]},
    ),
    "the same record twice": (
        leads(5),
        {
            "succeeded": 3,
            "failed": 2,
            "errors": [
                {"id": None, "externalId": "h-1", "error": "a"},
                {"id": None, "externalId": "h-1", "error": "b"},
            ],
        },
    ),
}


@pytest.mark.parametrize(("records", "answer"), list(UNRESOLVED.values()), ids=list(UNRESOLVED))
def test_a_per_record_error_that_names_no_record_sent_leaves_the_batch_unresolved(
    records, answer, hostile_server, carecycle_emulator, carecycle_connection, tmp_path
):
    server = hostile_server(upstream=carecycle_emulator.url)
    server.queue(Reply(200, answer))
    checkpoint = tmp_path / "checkpoint.json"

    with pytest.raises(UnsettledBatchError, match=r"Batch 0: .*per-record error.* cannot be tied to a lead sent"):
        run(hook_for(carecycle_connection, server), records, tmp_path, batch_size=5, checkpoint_path=str(checkpoint))

    assert (state(checkpoint)["done"], state(checkpoint)["partial"], state(checkpoint)["rejected"]) == ([], {}, {})
    assert not (tmp_path / "rejected.jsonl").exists()  # no rejection with "row": null

    summary = run(hook_for(carecycle_connection, server), records, tmp_path, checkpoint_path=str(checkpoint))
    assert (summary.uploaded, summary.rejected) == (5, 0)


def test_a_per_record_error_without_external_id_is_matched_when_one_lead_lacks_it(
    hostile_server, carecycle_emulator, carecycle_connection, tmp_path
):
    server = hostile_server(upstream=carecycle_emulator.url)
    records = leads(3)
    del records[1]["externalId"]
    records[1]["sourceId"] = "no-such-source"

    summary = run(hook_for(carecycle_connection, server), records, tmp_path)

    assert (summary.uploaded, summary.rejected) == (2, 1)
    (entry,) = [json.loads(line) for line in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert (entry["row"], entry["reason"]) == (2, "API: Source not found")


# -- 3. 4xx answers that say nothing about which record is wrong ----------------------------------------------


def refusing(status: int, body: Any) -> Any:
    def script(request: Recorded) -> Reply | None:
        return Reply(status, body) if request.path.split("?")[0] == UPLOAD else None

    return script


def test_a_413_halves_the_batch_once_and_fails_if_the_half_is_still_too_large(
    hostile_server, carecycle_emulator, carecycle_connection, tmp_path, captured_logs
):
    server = hostile_server(
        upstream=carecycle_emulator.url, script=refusing(413, {"message": "Payload Too Large", "code": "TOO_LARGE"})
    )
    checkpoint = tmp_path / "checkpoint.json"

    with pytest.raises(UnsettledBatchError, match=r"Batch 0: .*413.* even for half the batch \(100 leads\)"):
        run(hook_for(carecycle_connection, server), leads(200), tmp_path, checkpoint_path=str(checkpoint))

    assert [len(r.json()["records"]) for r in uploads(server)] == [200, 100]  # not 399 requests
    assert "Batch 0: careCycle answered 413 (payload too large) for 200 leads; sending them in two halves" in (
        captured_logs()
    )
    assert (state(checkpoint)["done"], state(checkpoint)["partial"]) == ([], {})
    assert stored(carecycle_emulator) == set()


def test_a_413_for_the_whole_batch_only_is_settled_by_its_halves(
    hostile_server, carecycle_emulator, carecycle_connection, tmp_path
):
    server = hostile_server(upstream=carecycle_emulator.url)
    server.queue(Reply(413, {"message": "Payload Too Large"}))

    summary = run(hook_for(carecycle_connection, server), leads(200), tmp_path)

    assert [len(r.json()["records"]) for r in uploads(server)] == [200, 100, 100]
    assert (summary.uploaded, summary.rejected) == (200, 0)
    assert stored(carecycle_emulator) == {f"h-{i}" for i in range(200)}


def test_the_half_settled_before_a_413_stays_settled_and_a_rerun_sends_only_the_other(
    hostile_server, carecycle_emulator, carecycle_connection, tmp_path, captured_logs
):
    server = hostile_server(upstream=carecycle_emulator.url)
    too_large = Reply(413, {"message": "Payload Too Large"})
    server.queue(too_large, Forward(), too_large)
    checkpoint = tmp_path / "checkpoint.json"

    with pytest.raises(UnsettledBatchError, match="even for half the batch"):
        run(hook_for(carecycle_connection, server), leads(200), tmp_path, checkpoint_path=str(checkpoint))

    assert state(checkpoint)["partial"] == {"0": list(range(100))}
    assert stored(carecycle_emulator) == {f"h-{i}" for i in range(100)}
    assert "Lead upload stopped: 100 of 200 leads are settled (100 uploaded, 0 rejected by the API)" in (
        captured_logs()
    )

    summary = run(hook_for(carecycle_connection, server), leads(200), tmp_path, checkpoint_path=str(checkpoint))

    assert [len(r.json()["records"]) for r in uploads(server)] == [200, 100, 100, 100]
    assert (summary.uploaded, summary.rejected) == (200, 0)
    assert stored(carecycle_emulator) == {f"h-{i}" for i in range(200)}


REFUSALS = {
    "405": (405, {"message": "Method Not Allowed"}),
    "415": (415, {"message": "Unsupported Media Type"}),
    "422": (422, {"message": "Unprocessable", "code": "UNPROCESSABLE"}),
    "400 without paths": (400, {"message": "Bad Request", "code": "BAD_REQUEST"}),
    "400 with request-level paths only": (
        400,
        {"message": "Bad Request", "code": "BAD_REQUEST", "errors": [{"path": ["records"], "message": "x"}]},
    ),
    "409": (409, {"message": "Conflict", "code": "CONFLICT"}),
}


@pytest.mark.parametrize(("status", "body"), list(REFUSALS.values()), ids=list(REFUSALS))
def test_a_4xx_that_names_no_record_fails_the_batch_at_once_without_bisecting(
    status, body, hostile_server, carecycle_emulator, carecycle_connection, tmp_path
):
    server = hostile_server(upstream=carecycle_emulator.url, script=refusing(status, body))
    checkpoint = tmp_path / "checkpoint.json"

    with pytest.raises(UnsettledBatchError, match=rf"Batch 0: careCycle refused the upload of 200 leads \({status}\b"):
        run(hook_for(carecycle_connection, server), leads(200), tmp_path, checkpoint_path=str(checkpoint))

    assert len(uploads(server)) == 1
    assert (state(checkpoint)["done"], state(checkpoint)["partial"], state(checkpoint)["rejected"]) == ([], {}, {})
    assert not (tmp_path / "rejected.jsonl").exists()


def test_a_400_validation_error_naming_no_record_is_still_bisected(
    hostile_server, carecycle_emulator, carecycle_connection, tmp_path
):
    # the first answer is a bare 400 VALIDATION_ERROR; the halves then go to the emulator, which takes them
    server = hostile_server(upstream=carecycle_emulator.url)
    server.queue(Reply(400, {"message": "Validation failed", "code": "VALIDATION_ERROR", "errors": []}))

    summary = run(hook_for(carecycle_connection, server), leads(8), tmp_path)

    assert [len(r.json()["records"]) for r in uploads(server)] == [8, 4, 4]
    assert (summary.uploaded, summary.rejected) == (8, 0)


# -- 4. a checkpoint belongs to one input AND one destination ---------------------------------------------------


def test_a_checkpoint_from_another_destination_starts_afresh(
    hostile_server, carecycle_emulator, carecycle_connection, tmp_path, captured_logs
):
    staging = hostile_server(script=accepting)  # a staging careCycle: accepts, stores nothing here
    checkpoint = str(tmp_path / "checkpoint.json")
    records = leads(30)
    staging_hook = hook_for(carecycle_connection, staging, "carecycle_staging")
    first = run(staging_hook, records, tmp_path, batch_size=10, checkpoint_path=checkpoint)
    assert (first.uploaded, len(uploads(staging))) == (30, 3)

    production = run(CareCycleHook(), records, tmp_path, batch_size=10, checkpoint_path=checkpoint)

    assert (production.uploaded, production.skipped_batches) == (30, 0)
    assert stored(carecycle_emulator) == {f"h-{i}" for i in range(30)}
    assert "written for another careCycle destination" in captured_logs()
    assert TEST_API_KEY not in Path(checkpoint).read_text()


def test_destination_id_depends_on_base_url_and_key_and_never_holds_the_key(carecycle_connection):
    a = CareCycleHook(carecycle_connection("cc_a", host="https://api.test", password="cc_key_one"))
    b = CareCycleHook(carecycle_connection("cc_b", host="https://api.test", password="cc_key_two"))
    c = CareCycleHook(carecycle_connection("cc_c", host="https://staging.test", password="cc_key_one"))
    same = CareCycleHook(carecycle_connection("cc_d", host="https://api.test/", password="cc_key_one"))

    assert len({a.destination_id, b.destination_id, c.destination_id}) == 3
    assert a.destination_id == same.destination_id
    assert all("cc_key" not in h.destination_id and "api.test" not in h.destination_id for h in (a, b, c))


REFUSED = {"field": None, "code": "api_error", "reason": "API: x"}
WRONG_SHAPES = {
    "a list": lambda s: [s],
    "done is a string": lambda s: {**s, "done": "0"},
    "done holds a list": lambda s: {**s, "done": [[0]]},
    "done out of range": lambda s: {**s, "done": [0, 1, 7]},
    "done negative": lambda s: {**s, "done": [-1, 0, 1]},
    "done missing": lambda s: {k: v for k, v in s.items() if k != "done"},
    "partial is a list": lambda s: {**s, "partial": [[0, 1]]},
    "partial key not a number": lambda s: {**s, "partial": {"zero": [1]}},
    "partial position out of range": lambda s: {**s, "done": [0], "partial": {"1": [0, 10]}},
    "rejected in the version 2 list form": lambda s: {**s, "rejected": {"0": [[0, None, "api_error", "API: x"]]}},
    "rejected without its reason": lambda s: {**s, "rejected": {"0": [{"field": None, "code": "api_error"}]}},
    "rejected without a position": lambda s: {**s, "rejected": {"0": [REFUSED]}},
    "rejected position out of range": lambda s: {**s, "rejected": {"0": [{**REFUSED, "position": 12}]}},
    "rejected position not settled": lambda s: {
        **s,
        "done": [1],
        "partial": {"0": [1]},
        "rejected": {"0": [{**REFUSED, "position": 0}]},
    },
    "batches a string": lambda s: {**s, "batches": "2"},
}


@pytest.mark.parametrize("mangle", list(WRONG_SHAPES.values()), ids=list(WRONG_SHAPES))
def test_a_checkpoint_of_the_wrong_shape_starts_afresh_with_a_warning(
    mangle, hostile_server, carecycle_emulator, carecycle_connection, tmp_path, captured_logs
):
    server = hostile_server(upstream=carecycle_emulator.url)
    checkpoint = tmp_path / "checkpoint.json"
    records = leads(20)
    run(hook_for(carecycle_connection, server), records, tmp_path, batch_size=10, checkpoint_path=str(checkpoint))
    checkpoint.write_text(json.dumps(mangle(state(checkpoint))))
    sent_before = len(uploads(server))

    summary = run(
        hook_for(carecycle_connection, server), records, tmp_path, batch_size=10, checkpoint_path=str(checkpoint)
    )

    assert (summary.uploaded, summary.skipped_batches, len(uploads(server)) - sent_before) == (20, 0, 2)
    assert f"Checkpoint {checkpoint.name}" in captured_logs() or str(checkpoint) in captured_logs()
    assert "is not a valid upload checkpoint" in captured_logs()
    assert state(checkpoint)["done"] == [0, 1]


@pytest.mark.parametrize("where", ["parent is a file", "path is a directory"])
def test_an_unwritable_checkpoint_fails_before_the_first_request(
    where, hostile_server, carecycle_emulator, carecycle_connection, tmp_path
):
    # tests run as root, so permission bits would not stop them: use places no one can write a file to
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-dir").mkdir()
    checkpoint = tmp_path / "a-file" / "cp.json" if where == "parent is a file" else tmp_path / "a-dir"
    server = hostile_server(upstream=carecycle_emulator.url)

    with pytest.raises(OSError, match=r"Cannot write the upload checkpoint .*checkpoint_path"):
        run(
            hook_for(carecycle_connection, server), leads(400), tmp_path, batch_size=10, checkpoint_path=str(checkpoint)
        )

    assert uploads(server) == []
    assert stored(carecycle_emulator) == set()


# -- 5. files holding PHI are private ----------------------------------------------------------------------------


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_checkpoint_and_its_temporary_files_are_created_0600(
    hostile_server, carecycle_emulator, carecycle_connection, tmp_path, monkeypatch
):
    partial_modes: list[int] = []
    real_replace = os.replace

    def watching_replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if str(src).endswith(".partial"):
            partial_modes.append(mode(src))
        real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", watching_replace)
    old_umask = os.umask(0o022)
    try:
        server = hostile_server(upstream=carecycle_emulator.url)
        records = leads(4)
        records[1]["sourceId"] = "no-such-source"  # the checkpoint then holds the API's reason
        checkpoint = tmp_path / "state" / "checkpoint.json"
        run(hook_for(carecycle_connection, server), records, tmp_path, batch_size=2, checkpoint_path=str(checkpoint))
    finally:
        os.umask(old_umask)

    refused = {"field": None, "code": "api_error", "reason": "API: Source not found", "position": 1}
    assert state(checkpoint)["rejected"] == {"0": [refused]}
    assert mode(checkpoint) == 0o600
    assert partial_modes and set(partial_modes) == {0o600}
    assert not [p for p in checkpoint.parent.iterdir() if p.name.endswith(".partial")]


def test_the_lead_spool_has_no_name_on_disk():
    """The spool is SQLite's temporary database: on disk (once it outgrows the cache) under no name, so no other
    user can open it and nothing of it outlives the process (tests/adversarial/test_hostile_disk.py kills one)."""

    def open_files() -> dict[str, str]:
        found = {}
        for fd in os.listdir("/proc/self/fd"):
            try:
                found[fd] = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                pass
        return found

    before = open_files()
    spool = LeadSpool()
    try:
        for n in range(40_000):  # about 16 MB: past the spool's 8 MB cache, so its pages go to disk
            spool.add(LeadItem.of(n, f"id-{n}", {"externalId": f"id-{n}", "firstName": "x" * 300}, "{}", None))
        opened = [target for fd, target in open_files().items() if before.get(fd) != target and "/" in target]
        assert opened and all(target.endswith(" (deleted)") for target in opened), opened
    finally:
        spool.close()


# -- 6. ten thousand leads through a hostile server in front of the emulator ------------------------------------

RATE_LIMITED = {"message": "Rate limit exceeded", "code": "RATE_LIMIT_EXCEEDED"}

#: hostile answers to upload requests that only the upload engine has to cope with (and the hook as it is)
UPLOAD_HOSTILITY = {
    "429": 0.1,  # retryAfter 0.05 s: the hook waits and retries
    "empty": 0.015,  # {} and nothing stored
    "unaccounted": 0.015,  # stored, but the answer does not add up ({}, null, [], wrong counts, missing errors)
    "forward_then_drop": 0.02,  # stored, the answer cut mid-body
    "413": 0.03,  # the batch is halved once
}
#: hostile answers the transport branch (hooks/_http.py) has to turn into loud errors
TRANSPORT_HOSTILITY = {
    "redirect": 0.01,  # 302/307/308 to another host that would take the leads and say "all succeeded"
    "huge_retry_after": 0.005,  # 429 with retryAfter 3600 s, above the connection's max_retry_after
}


class Hostile:
    """The script: picks, at random with a fixed seed, what each upload request gets; counts what it did."""

    def __init__(self, rates: dict[str, float], seed: int, thief_url: str) -> None:
        self.rates = rates
        self.rng = random.Random(seed)
        self.thief_url = thief_url
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, request: Recorded) -> Any:
        if request.path.split("?")[0] != UPLOAD:
            return None
        sent = len(request.json()["records"])
        with self.lock:
            roll, pick = self.rng.random(), self.rng.random()
            name = "forward"
            for candidate, rate in self.rates.items():
                if roll < rate:
                    name = candidate
                    break
                roll -= rate
            self.counts[name] += 1
        if name == "429":
            return Reply(429, {**RATE_LIMITED, "retryAfter": 0.05})
        if name == "empty":
            return Reply(200, {})
        if name == "unaccounted":
            bodies = [
                {},
                b"null",
                [],
                {"succeeded": sent - 1, "failed": 0, "errors": []},
                {"succeeded": sent, "failed": 1, "errors": []},
                {"succeeded": sent + 1, "failed": -1, "errors": []},
            ]
            return ForwardThenReply(Reply(200, bodies[int(pick * len(bodies))]))
        if name == "forward_then_drop":
            return ForwardThenDrop(sent=int(pick * 20))
        if name == "413":
            return Reply(413, {"message": "Payload Too Large", "code": "PAYLOAD_TOO_LARGE"})
        if name == "redirect":
            return Redirect((302, 307, 308)[int(pick * 3)], f"{self.thief_url}{UPLOAD}")
        if name == "huge_retry_after":
            return Reply(429, {**RATE_LIMITED, "retryAfter": 3600})
        return None  # forward to the emulator


def thief_script(request: Recorded) -> Reply:
    """A host the key and the leads must never reach; it would claim every lead it got as uploaded."""
    body = request.json() if request.body else None
    records = body.get("records") if isinstance(body, dict) else None
    return Reply(200, {"succeeded": len(records or []), "failed": 0, "errors": []})


@pytest.mark.slow
@pytest.mark.parametrize(
    "hostility",
    [
        pytest.param(UPLOAD_HOSTILITY, id="upload-answers"),
        pytest.param({**UPLOAD_HOSTILITY, **TRANSPORT_HOSTILITY}, id="upload-and-transport-answers"),
    ],
)
def test_ten_thousand_leads_through_a_hostile_server(
    hostility, hostile_server, carecycle_emulator, carecycle_connection, tmp_path, monkeypatch
):
    extra: dict[str, Any] = {"requests_per_minute": 6000, "max_retries": 8}
    if "huge_retry_after" in hostility:
        extra["max_retry_after"] = 5
    too_long: list[float] = []
    import tenacity

    real_sleep = tenacity.nap.sleep

    def bounded_sleep(seconds: float) -> None:  # a guard, so a transport regression fails instead of hanging
        if seconds > 30:
            too_long.append(seconds)
            raise RuntimeError(f"the hook was about to sleep {seconds} s")
        real_sleep(seconds)

    monkeypatch.setattr(tenacity.nap, "sleep", bounded_sleep)

    thief = hostile_server(script=thief_script)
    script = Hostile(hostility, seed=10, thief_url=thief.url)
    server = hostile_server(upstream=carecycle_emulator.url, script=script)
    conn_id = carecycle_connection("carecycle_hostile", host=server.url, password=TEST_API_KEY, extra=extra)

    records = leads(10_000, prefix="big")
    invalid = {f"big-{i}" for i in range(10_000) if i % 200 == 199}
    bad_source = {f"big-{i}" for i in range(10_000) if i % 250 == 7}
    for record in records:
        if record["externalId"] in invalid:
            record["phoneNumber"] = "0000"
        if record["externalId"] in bad_source:
            record["sourceId"] = "no-such-source"
    valid_ids = [r["externalId"] for r in records if r["externalId"] not in invalid]
    batches = [valid_ids[i : i + 50] for i in range(0, len(valid_ids), 50)]
    checkpoint = tmp_path / "checkpoint.json"

    def unsettled_after_checking_the_checkpoint() -> int:
        """Check that whatever the checkpoint calls settled is true of careCycle; return the unsettled count."""
        held = stored(carecycle_emulator, "big")
        cp = state(checkpoint)
        accepted, rejected = set(), set()
        for number, ids in enumerate(batches):
            settled = range(len(ids)) if number in cp["done"] else cp["partial"].get(str(number), [])
            refused = {r["position"] for r in cp["rejected"].get(str(number), [])}
            for position in settled:
                (rejected if position in refused else accepted).add(ids[position])
        assert accepted <= held, "the checkpoint holds as uploaded leads careCycle does not have"
        assert rejected <= bad_source and not rejected & held
        return len(valid_ids) - len(accepted) - len(rejected)

    runs: list[str] = []
    unsettled: list[int] = []
    while True:
        assert len(runs) < 80, f"no end in sight after {len(runs)} runs: {Counter(runs)}"
        op = CareCycleUploadLeadsOperator(
            task_id="upload",
            records=records,
            carecycle_conn_id=conn_id,
            rejected_path=str(tmp_path / "rejected.jsonl"),
            checkpoint_path=str(checkpoint),
            max_rejected_ratio=0.02,
            batch_size=50,
            max_in_flight=4,
            hook_params={"retry_backoff": 0.01, "rate_limit_window": 1.0},
        )
        try:
            result = op.execute({})
        except Exception as err:  # any loud failure; a retry of the task resumes from the checkpoint
            assert not too_long, f"the hook slept out a retryAfter of {too_long} s"
            runs.append(type(err).__name__)
            unsettled.append(unsettled_after_checking_the_checkpoint())
            forget_shared_limiters(server.url)  # a retried task is a new process
            continue
        runs.append("ok")
        assert unsettled_after_checking_the_checkpoint() == 0
        break

    held = stored(carecycle_emulator, "big")
    rejected_lines = [json.loads(line) for line in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    rejected_ids = {e["record"]["externalId"] for e in rejected_lines}
    accepted_by_emulator = Counter(
        lead["externalId"] for r in uploads(server) if r.upstream_status == 200 for lead in r.json()["records"]
    )
    figures = {
        "upload requests": len(uploads(server)),
        "leads careCycle accepted more than once (re-sent after an unaccounted or lost answer, upserted)": sum(
            1 for count in accepted_by_emulator.values() if count > 1
        ),
        "hostile answers": dict(script.counts),
        "uploaded": result["uploaded"],
        "rejected": result["rejected"],
        "unsettled after each failed run": unsettled,
        "runs": Counter(runs),
        "reruns needed": len(runs) - 1,
    }
    print(f"\n10,000 leads through a hostile server ({', '.join(hostility)}):\n{json.dumps(figures, indent=1)}")

    # every lead: accepted by careCycle (an upsert: one customer per externalId), or rejected with a reason
    assert held == set(valid_ids) - bad_source
    customers = carecycle_emulator.get_customers_by_external_id()
    assert all(len(customers[external_id]) == 1 for external_id in held)
    assert result["uploaded"] == len(held) == 10_000 - len(invalid) - len(bad_source)
    assert rejected_ids == invalid | bad_source and all(e["reason"] for e in rejected_lines)
    assert result["total"] == result["uploaded"] + result["rejected"] + result["duplicates"] == 10_000
    # the hostility really happened, and the key and the leads never went anywhere else
    assert script.counts["429"] and script.counts["forward_then_drop"] and script.counts["413"]
    assert thief.requests == []
