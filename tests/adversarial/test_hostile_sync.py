"""The sync ledger under lost answers and kills: it never vouches for a version careCycle may not hold (issue 20,
item 1).

Every upload goes through the real :class:`CareCycleHook` over real HTTP to a :class:`HostileServer` in front of the
careCycle emulator, which stores what it is sent even when the answer never reaches the worker. The story each test
plays: version A of some leads is sent and acknowledged; version B is sent and careCycle stores it, but the worker
never learns the outcome; the source goes back to A. The next run must send A, or careCycle keeps calling with B.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_carecycle.exceptions import CareCycleAPIError, TaskKilledError
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
from airflow_provider_carecycle.leads import LeadValidator
from airflow_provider_carecycle.sync.engine import LeadUploader
from airflow_provider_carecycle.sync.ledger import SyncLedger
from airflow_provider_carecycle.sync.spool import lead_text
from carecycle_emulator import TEST_API_KEY
from tests.adversarial.hostile_server import (
    ForwardThenDrop,
    ForwardThenReply,
    ForwardThenStall,
    HostileServer,
    Recorded,
    Reply,
)

UPLOAD = "/v2/leads/upload"
CHANGED = range(5)  # the leads whose version B careCycle stores without the worker knowing


def feed(version: str, n: int = 10) -> list[dict[str, Any]]:
    """``n`` leads ``sy-<i>``; ``version`` B changes the first name of the leads in :data:`CHANGED` only."""
    return [
        {
            "externalId": f"sy-{i}",
            "phoneNumber": f"212555{i:04d}",
            "postalCode": "10001",
            "firstName": f"{version if i in CHANGED else 'A'}-{i}",
        }
        for i in range(n)
    ]


def held(emu: Any, prefix: str = "sy-") -> dict[str, str]:
    """What careCycle holds of the leads whose externalId starts with ``prefix``: externalId -> first name of the
    newest upload."""
    return {
        external_id: customers[-1]["firstName"]
        for external_id, customers in emu.get_customers_by_external_id().items()
        if external_id and external_id.startswith(prefix)
    }


def is_upload(request: Recorded) -> bool:
    return request.path.split("?")[0] == UPLOAD


def connect(carecycle_connection: Any, server: HostileServer, **extra: Any) -> str:
    return carecycle_connection(
        "carecycle_sync",
        host=server.url,
        password=TEST_API_KEY,
        extra={"requests_per_minute": 6000, "max_retries": 0, **extra},
    )


def uploader(conn_id: str, tmp_path: Path, **kwargs: Any) -> LeadUploader:
    hook = CareCycleHook(conn_id, retry_backoff=0.01, rate_limit_window=1.0)
    return LeadUploader(hook, LeadValidator(), sync_state_path=str(tmp_path / "ledger"), batch_size=5, **kwargs)


def vouched(tmp_path: Path, destination: str, records: list[dict[str, Any]]) -> list[str]:
    """The externalIds of ``records`` the ledger folder now counts as unchanged (careCycle holds them so)."""
    validator = LeadValidator()
    leads = [validator.validate(record).lead for record in records]
    with SyncLedger(str(tmp_path / "ledger"), destination=destination) as ledger:
        rows = [
            (lead["externalId"], *ledger.hasher(validator.identity(lead), lead_text(lead))) for lead in leads if lead
        ]
        return list(ledger.unchanged(rows))


# -- the unknown outcomes ------------------------------------------------------------------------------------------


def _lost_answer(server: HostileServer, run: LeadUploader) -> None:
    server.script = lambda r: ForwardThenDrop(sent=3) if is_upload(r) else None


def _5xx_after_stored(server: HostileServer, run: LeadUploader) -> None:
    server.script = lambda r: ForwardThenReply(Reply(503, {"message": "upstream timeout"})) if is_upload(r) else None


def _timeout_after_stored(server: HostileServer, run: LeadUploader) -> None:
    server.script = lambda r: ForwardThenStall(stall_s=2.5) if is_upload(r) else None


def _abandoned(server: HostileServer, run: LeadUploader) -> None:
    def script(request: Recorded) -> Any:
        if not is_upload(request):
            return None
        threading.Timer(0.3, run.stop).start()  # the task is killed while careCycle works on the request
        return ForwardThenStall(stall_s=2.0)

    server.script = script


UNKNOWN_OUTCOMES = {
    "answer-lost": (_lost_answer, CareCycleAPIError),
    "5xx-after-stored": (_5xx_after_stored, CareCycleAPIError),
    "timeout-after-stored": (_timeout_after_stored, CareCycleAPIError),
    "abandoned-on-stop": (_abandoned, TaskKilledError),
}


@pytest.mark.parametrize("outcome", list(UNKNOWN_OUTCOMES))
def test_a_version_whose_outcome_is_unknown_is_never_vouched_for(
    outcome, hostile_server, carecycle_emulator, carecycle_connection, tmp_path
):
    server = hostile_server(upstream=carecycle_emulator.url)
    conn_id = connect(carecycle_connection, server, timeout=1)

    first = uploader(conn_id, tmp_path).run(feed("A"))  # careCycle acknowledges version A of all ten
    assert first.uploaded == 10 and set(held(carecycle_emulator).values()) == {f"A-{i}" for i in range(10)}

    run = uploader(conn_id, tmp_path, stop_grace_s=0.2)
    arrange, failure = UNKNOWN_OUTCOMES[outcome]
    arrange(server, run)
    with pytest.raises(failure):
        run.run(feed("B"))  # careCycle stores B; the worker never learns it
    assert {i: held(carecycle_emulator)[f"sy-{i}"] for i in CHANGED} == {i: f"B-{i}" for i in CHANGED}

    server.script = None  # the source goes back to A, careCycle answers again
    third = uploader(conn_id, tmp_path).run(feed("A"))
    assert held(carecycle_emulator) == {f"sy-{i}": f"A-{i}" for i in range(10)}, "careCycle keeps version B"
    assert (third.uploaded, third.unchanged) == (len(CHANGED), 10 - len(CHANGED))


def test_the_ledger_stops_vouching_before_careCycle_hears_of_the_change(
    hostile_server, carecycle_emulator, carecycle_connection, tmp_path
):
    server = hostile_server(upstream=carecycle_emulator.url)
    conn_id = connect(carecycle_connection, server)
    destination = CareCycleHook(conn_id).destination_id
    uploader(conn_id, tmp_path).run(feed("A"))
    seen_at_request: list[list[str]] = []

    def script(request: Recorded) -> None:
        if is_upload(request):  # what any run reading the ledger now would skip
            seen_at_request.append(vouched(tmp_path, destination, feed("A")))

    server.script = script
    uploader(conn_id, tmp_path).run(feed("B"))
    changed = {f"sy-{i}" for i in CHANGED}
    assert seen_at_request and all(not changed & set(v) for v in seen_at_request)
    assert not changed & set(vouched(tmp_path, destination, feed("A")))
    assert sorted(vouched(tmp_path, destination, feed("B"))) == sorted(f"sy-{i}" for i in range(10))


# -- kill -9 -------------------------------------------------------------------------------------------------------


def _child(conn_id: str, tmp_path: str, kill_at_ledger_write: int | None) -> None:
    """The task process: send version B; die at the given ledger write (a rename into the folder) if any."""
    if kill_at_ledger_write is not None:
        real_replace, writes = os.replace, {"n": 0}

        def replace(source: str, target: str) -> None:
            if os.path.basename(str(target)).startswith("ledger-"):
                writes["n"] += 1
                if writes["n"] == kill_at_ledger_write:
                    os.kill(os.getpid(), signal.SIGKILL)
            real_replace(source, target)

        os.replace = replace  # type: ignore[assignment]  # this forked task process only
    uploader(conn_id, Path(tmp_path), ledger_save_every_s=3600.0).run(feed("B"))


@pytest.mark.parametrize(
    "moment",
    ["request-in-flight", "first-ledger-write", "second-ledger-write"],
)
def test_a_worker_killed_minus_nine_at_any_step_leaves_no_stale_vouch(
    moment, hostile_server, carecycle_emulator, carecycle_connection, tmp_path
):
    server = hostile_server(upstream=carecycle_emulator.url)
    conn_id = connect(carecycle_connection, server)
    uploader(conn_id, tmp_path).run(feed("A"))

    context = multiprocessing.get_context("fork")
    if moment == "request-in-flight":
        child = context.Process(target=_child, args=(conn_id, str(tmp_path), None))

        def script(request: Recorded) -> Any:
            if not is_upload(request):
                return None
            threading.Timer(0.3, os.kill, (child.pid, signal.SIGKILL)).start()  # careCycle has it by then
            return ForwardThenStall(stall_s=2.0)

        server.script = script
    else:
        kill_at = 1 if moment == "first-ledger-write" else 2
        child = context.Process(target=_child, args=(conn_id, str(tmp_path), kill_at))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL

    server.script = None
    uploader(conn_id, tmp_path).run(feed("A"))
    assert held(carecycle_emulator) == {f"sy-{i}": f"A-{i}" for i in range(10)}, "careCycle keeps version B"


def test_a_full_sync_whose_outcome_is_unknown_leaves_no_stale_vouch(
    hostile_server, carecycle_emulator, carecycle_connection, tmp_path
):
    server = hostile_server(upstream=carecycle_emulator.url)
    conn_id = connect(carecycle_connection, server)
    uploader(conn_id, tmp_path).run(feed("A"))

    _lost_answer(server, None)  # type: ignore[arg-type]
    with pytest.raises(CareCycleAPIError):
        uploader(conn_id, tmp_path, full_sync=True).run(feed("B"))
    assert held(carecycle_emulator)["sy-0"] == "B-0"

    server.script = None
    uploader(conn_id, tmp_path).run(feed("A"))
    assert held(carecycle_emulator) == {f"sy-{i}": f"A-{i}" for i in range(10)}, "careCycle keeps version B"
