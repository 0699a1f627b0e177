"""The campaign stats trigger, run under asyncio against the careCycle emulator over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import logging
import threading
import time

import pytest

from airflow_provider_carecycle._compat import AirflowException, AirflowFailException
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
from airflow_provider_carecycle.sensors.campaigns import CareCycleCampaignStatsSensor
from airflow_provider_carecycle.triggers import campaigns as campaigns_module
from airflow_provider_carecycle.triggers.campaigns import CareCycleCampaignStatsTrigger, min_poll_interval

UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"
FAST = {"requests_per_minute": 6000}  # the emulator fixture allows 6000 a minute


def first_campaign(emu):
    return emu.list_campaigns()[0]


def make_trigger(campaign_id, threshold, *, end_in=30.0, **kwargs):
    kwargs.setdefault("hook_params", FAST)
    kwargs.setdefault("poll_interval", 0.02)
    return CareCycleCampaignStatsTrigger(
        campaign_id=campaign_id, threshold=threshold, end_time=time.time() + end_in, **kwargs
    )


def counting_polls(trigger):
    """Count the trigger's polls (each one is supposed to be exactly one request)."""
    polls = []
    poll = trigger._poll

    async def counted():
        polls.append(1)
        return await poll()

    trigger._poll = counted
    return polls


async def first_event(trigger):
    async for event in trigger.run():
        return event.payload
    return None


def campaign_gets(emu, campaign_id):
    return [r for r in emu.request_log() if r["method"] == "GET" and r["path"] == f"/v2/campaigns/{campaign_id}"]


# -- serialisation ------------------------------------------------------------------------------------------------


def test_serialize_round_trips_through_json():
    trigger = make_trigger(
        "1369e7fe-6ed5-49b5-8b46-243bf8918958",
        {"completed_ratio": 0.8, "pending": ("<=", 0)},
        carecycle_conn_id="cc_prod",
        terminal_statuses=("cancelled",),
        fail_on_terminal=False,
        poll_interval=300,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_carecycle.triggers.campaigns.CareCycleCampaignStatsTrigger"
    kwargs = json.loads(json.dumps(kwargs))  # JSON-friendly only
    assert kwargs["threshold"] == {"completed_ratio": [">=", 0.8], "pending": ["<=", 0]}
    assert kwargs["terminal_statuses"] == ["cancelled"]
    again = CareCycleCampaignStatsTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert again.conditions == trigger.conditions


def test_poll_interval_never_below_one_request_per_rate_limit_slot():
    assert make_trigger(UNKNOWN_ID, {"total": 1}, poll_interval=0.1, hook_params={}).poll_interval == 1.0
    assert (
        make_trigger(UNKNOWN_ID, {"total": 1}, poll_interval=0.1, hook_params={"requests_per_minute": 30}).poll_interval
        == 2.0
    )
    assert make_trigger(UNKNOWN_ID, {"total": 1}, poll_interval=90, hook_params={}).poll_interval == 90.0
    assert min_poll_interval({"requests_per_minute": 6000, "rate_limit_window": 60}) == 0.01


def test_bad_threshold_is_rejected_when_built():
    with pytest.raises(ValueError, match="Valid keys"):
        make_trigger(UNKNOWN_ID, {"done": 1})


# -- events -------------------------------------------------------------------------------------------------------


def test_success_at_once_when_the_threshold_already_holds(carecycle_emulator):
    campaign = first_campaign(carecycle_emulator)
    trigger = make_trigger(campaign["id"], {"total": campaign["customerStats"]["total"]})
    polls = counting_polls(trigger)
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "success"
    assert event["stats"]["id"] == campaign["id"]
    assert event["stats"]["total"] == campaign["customerStats"]["total"]
    assert event["stats"]["status_completed"] == campaign["customerStats"]["statusCounts"]["completed"]
    assert len(polls) == 1 and len(campaign_gets(carecycle_emulator, campaign["id"])) == 1


def test_success_once_the_dialer_reaches_the_threshold_with_one_request_per_poll(carecycle_emulator):
    emu = carecycle_emulator
    campaign = first_campaign(emu)
    start = campaign["customerStats"]["statusCounts"]["completed"]
    trigger = make_trigger(campaign["id"], {"completed": start + 3, "pending": ("<=", 0)})
    polls = counting_polls(trigger)

    async def dial_and_wait():
        waiting = asyncio.ensure_future(first_event(trigger))
        while not waiting.done():
            await asyncio.to_thread(emu.tick_dialer, 1)
            await asyncio.sleep(0.03)
        return waiting.result()

    event = asyncio.run(dial_and_wait())
    assert event["status"] == "success"
    now = emu.store.get_campaign(campaign["id"])["customerStats"]
    assert event["stats"]["status_completed"] >= start + 3
    assert event["stats"]["status_pending"] == 0
    assert now["statusCounts"]["completed"] >= event["stats"]["status_completed"]
    assert len(polls) > 1
    assert len(campaign_gets(emu, campaign["id"])) == len(polls)  # exactly one request per poll


def test_terminal_campaign_ends_the_wait_with_a_terminal_event(carecycle_emulator):
    campaign = first_campaign(carecycle_emulator)
    carecycle_emulator.set_campaign_status(campaign["id"], "cancelled")
    event = asyncio.run(first_event(make_trigger(campaign["id"], {"completed_ratio": 1.0})))
    assert event["status"] == "terminal"
    assert event["stats"]["status"] == "cancelled"
    assert campaign["id"] in event["message"] and "completed_ratio >= 1" in event["message"]


def test_terminal_statuses_are_ignored_without_fail_on_terminal(carecycle_emulator):
    campaign = first_campaign(carecycle_emulator)
    carecycle_emulator.set_campaign_status(campaign["id"], "cancelled")
    trigger = make_trigger(campaign["id"], {"completed_ratio": 1.0}, end_in=0.2, fail_on_terminal=False)
    assert asyncio.run(first_event(trigger))["status"] == "timeout"


def test_never_reached_threshold_times_out_at_the_end_time(carecycle_emulator):
    campaign = first_campaign(carecycle_emulator)
    trigger = make_trigger(campaign["id"], {"total": 10_000}, end_in=0.5, poll_interval=0.1)
    polls = counting_polls(trigger)
    event = asyncio.run(first_event(trigger))
    late_by = time.time() - trigger.end_time
    assert event["status"] == "timeout"
    assert f"total >= 10000 (now {campaign['customerStats']['total']})" in event["message"]
    assert late_by >= 0  # not before the end time
    assert late_by < 2.0  # and not a poll interval (or more) after it
    assert 3 <= len(polls) <= 7  # about one poll per interval
    assert len(campaign_gets(carecycle_emulator, campaign["id"])) == len(polls)


class Said(logging.Handler):
    """The records of one logger of its own (the trigger's lines, whichever logging Airflow set up)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.logger = logging.getLogger(f"tests.said.{id(self)}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_each_change_is_said_at_info_and_unchanged_polls_at_debug(carecycle_emulator):
    emu = carecycle_emulator
    campaign = first_campaign(emu)
    trigger = make_trigger(campaign["id"], {"total": 10**9}, fail_on_terminal=False)
    polls = counting_polls(trigger)
    logged = Said()
    trigger._log = logged.logger

    async def watch():
        waiting = asyncio.ensure_future(first_event(trigger))
        for changed_at in (4, 8):  # four polls of one account, then of another, then of a third
            while len(polls) < changed_at:
                await asyncio.sleep(0.005)
            emu.set_campaign_status(campaign["id"], "paused" if changed_at == 4 else "active")
        while len(polls) < 12:
            await asyncio.sleep(0.005)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting

    asyncio.run(watch())
    said = [(r.levelno, r.getMessage()) for r in logged.records if "Next poll in about" in r.getMessage()]
    info = [message for level, message in said if level == logging.INFO]
    assert len(said) >= 11, said  # one line per poll
    assert [m.split(": ", 1)[1].split(";")[0] for m in info] == ["status=active", "status=paused", "status=active"]
    assert all(level == logging.DEBUG for level, message in said if message not in info)


def test_an_unchanged_account_is_said_at_info_again_every_ten_minutes(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(campaigns_module.time, "monotonic", lambda: now[0])
    trigger = make_trigger(UNKNOWN_ID, {"total": 1})
    levels = []
    for step in (0, 1, campaigns_module.UNCHANGED_INFO_EVERY_S - 2, 1, 1):
        now[0] += step
        levels.append(trigger._level_for("status=active; unmet: total >= 1 (now 0)"))
    assert levels == [logging.INFO, logging.DEBUG, logging.DEBUG, logging.INFO, logging.DEBUG]
    assert trigger._level_for("status=paused; unmet: total >= 1 (now 0)") == logging.INFO


def test_unknown_campaign_is_a_non_retryable_error_naming_the_id(carecycle_emulator):
    event = asyncio.run(first_event(make_trigger(UNKNOWN_ID, {"total": 1})))
    assert event == {
        "status": "error",
        "message": f"careCycle campaign {UNKNOWN_ID} was not found (404).",
        "retryable": False,
    }


def test_api_errors_become_error_events(carecycle_emulator, carecycle_connection):
    conn_id = carecycle_connection("cc_wrong_key", host=carecycle_emulator.url, password="cc_not_a_key")
    event = asyncio.run(
        first_event(make_trigger(first_campaign(carecycle_emulator)["id"], {"total": 1}, carecycle_conn_id=conn_id))
    )
    assert event["status"] == "error" and event["retryable"] is False
    assert "401" in event["message"]


def test_server_errors_after_retries_are_retryable_error_events(carecycle_emulator):
    carecycle_emulator.configure(fault_rate=1.0, fault_kinds=("503",))
    trigger = make_trigger(
        first_campaign(carecycle_emulator)["id"],
        {"total": 1},
        hook_params={**FAST, "max_retries": 1, "retry_backoff": 0.01},
    )
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "error" and event["retryable"] is True
    assert "503" in event["message"]


def test_polling_never_blocks_the_event_loop(carecycle_emulator):
    """Slow HTTP answers (0.4 s each) are awaited on the loop (async HTTP): a 10 ms heartbeat keeps beating."""
    carecycle_emulator.configure(latency_ms=400)
    campaign = first_campaign(carecycle_emulator)
    trigger = make_trigger(campaign["id"], {"total": 10_000}, end_in=1.0, poll_interval=0.01)

    async def with_heartbeat():
        gaps, last = [], time.monotonic()
        waiting = asyncio.ensure_future(first_event(trigger))
        while not waiting.done():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
        return waiting.result(), max(gaps)

    event, longest_gap = asyncio.run(with_heartbeat())
    assert event["status"] == "timeout"
    assert longest_gap < 0.2  # a blocking 0.4 s request on the loop would show up here


def test_the_trigger_talks_to_airflow_only_from_its_event_loop_or_sync_to_async(carecycle_emulator, monkeypatch):
    """What Airflow 3.0's and 3.1's triggerer needs (issue 19): the connection lookup and the masking of the key are
    messages to its supervisor, safe only on the event loop or in asgiref's ``sync_to_async`` thread, which routes
    them back to the loop. From a plain thread (``asyncio.to_thread``) they read each other's replies and the
    triggerer dies ("Response read out of order"); ``tests/deployment`` shows it in a real triggerer."""
    from asgiref.sync import SyncToAsync

    import airflow_provider_carecycle.hooks.carecycle as carecycle_hooks

    seen: list[tuple[str, bool]] = []
    trigger_loop: list[asyncio.AbstractEventLoop] = []

    def record(what: str) -> None:
        loop = trigger_loop[0]
        routed = getattr(SyncToAsync.threadlocal, "main_event_loop", None) is loop  # a sync_to_async thread
        seen.append((what, routed or asyncio._get_running_loop() is loop))

    lookup, mask = CareCycleHook.get_connection, carecycle_hooks.mask_secret
    monkeypatch.setattr(
        CareCycleHook, "get_connection", staticmethod(lambda conn_id: record("lookup") or lookup(conn_id))
    )
    monkeypatch.setattr(carecycle_hooks, "mask_secret", lambda *args, **kwargs: record("mask") or mask(*args, **kwargs))
    campaign = first_campaign(carecycle_emulator)

    async def run():
        trigger_loop.append(asyncio.get_running_loop())
        return await first_event(make_trigger(campaign["id"], {"total": 1}))

    assert asyncio.run(run())["status"] == "success"
    assert seen == [("lookup", True), ("mask", True)]


def test_last_poll_before_the_end_time_keeps_to_the_rate_limit():
    trigger = make_trigger(UNKNOWN_ID, {"total": 1}, end_in=0.2, poll_interval=10, hook_params={})
    assert trigger._next_delay() == 1.0  # 0.2 s left, but polls stay at least 1 s apart at 60 a minute
    trigger.end_time = time.time() + 5
    assert 4 < trigger._next_delay() <= 5  # otherwise the wait ends at the end time
    assert make_trigger(UNKNOWN_ID, {"total": 1}, end_in=60, poll_interval=10)._next_delay() == 10


def test_the_poll_floor_counts_the_connections_rate_limit_as_the_sensors_does(carecycle_emulator, carecycle_connection):
    # the connection allows 30 requests a minute: one poll per 2 s, whatever hook_params (silent here) say
    campaign = first_campaign(carecycle_emulator)
    conn = json.loads(carecycle_emulator.airflow_connection(requests_per_minute=30))
    carecycle_connection("slow", **conn)
    trigger = make_trigger(campaign["id"], {"total": 10**9}, carecycle_conn_id="slow", hook_params={}, end_in=0.1)
    assert trigger.poll_interval == 1.0  # before any request only hook_params are known (no lookup in the loop)

    async def ready_and_poll():
        await trigger._ready_hook()
        await trigger._poll()

    asyncio.run(ready_and_poll())
    trigger.end_time = time.time() - 1
    assert trigger._next_delay() == 2.0 == min_poll_interval({}, trigger._hook)
    op = CareCycleCampaignStatsSensor(
        task_id="wait",
        campaign_id=campaign["id"],
        threshold={"total": 10**9},
        carecycle_conn_id="slow",
        poke_interval=0,
    )
    op.poke({})
    assert op._trigger().poll_interval == 2.0  # the sensor hands the trigger the same floor


# -- transient and permanent failures -------------------------------------------------------------------------------
#
# A retryable error event lets the task's ``retries`` apply (the sensor raises AirflowException); a non-retryable
# one fails the task at once (AirflowFailException). See test_the_sensor_turns_error_events_into_the_right_failure.


@contextlib.contextmanager
def answering(status, body):
    """A hostile careCycle on 127.0.0.1 answering every request with ``status`` and the JSON ``body``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def error_event_for(campaign_id, **kwargs):
    event = asyncio.run(first_event(make_trigger(campaign_id, {"total": 1}, **kwargs)))
    assert event["status"] == "error"
    return event


def test_no_answer_after_the_hooks_retries_is_retryable(carecycle_emulator):
    carecycle_emulator.configure(fault_rate=1.0, fault_kinds=("drop",))
    campaign_id = first_campaign(carecycle_emulator)["id"]
    event = error_event_for(campaign_id, hook_params={**FAST, "max_retries": 1, "retry_backoff": 0.01})
    assert event["retryable"] is True
    assert "no answer" in event["message"] and "retries apply" in event["message"]
    assert len(campaign_gets(carecycle_emulator, campaign_id)) == 2  # the hook's own retry came first


def test_rate_limited_after_the_hooks_retries_is_retryable(carecycle_emulator):
    emu = carecycle_emulator
    campaign_id = first_campaign(emu)["id"]
    emu.configure(rate_limit=1)
    CareCycleHook(**FAST).get_campaign(campaign_id)  # the emulator's one request a minute is used up
    event = error_event_for(campaign_id, hook_params={**FAST, "max_retries": 0})
    assert event["retryable"] is True
    assert "rate limit exceeded" in event["message"]
    assert [r["status"] for r in campaign_gets(emu, campaign_id)] == [200, 429]


@pytest.mark.parametrize(
    ("status", "code"), [(401, "UNAUTHORIZED"), (403, "FORBIDDEN"), (404, "NOT_FOUND"), (400, "VALIDATION_ERROR")]
)
def test_auth_not_found_and_rejected_answers_are_not_retryable(carecycle_connection, status, code):
    with answering(status, {"message": "no", "code": code}) as url:
        conn_id = carecycle_connection("cc_hostile", host=url)
        event = error_event_for(UNKNOWN_ID, carecycle_conn_id=conn_id, hook_params={**FAST, "max_retries": 2})
    assert event["retryable"] is False
    assert str(status) in event["message"] or "not found" in event["message"]


def test_a_connection_that_is_not_defined_is_not_retryable_and_is_named(carecycle_emulator):
    event = error_event_for(first_campaign(carecycle_emulator)["id"], carecycle_conn_id="cc_nowhere")
    assert event["retryable"] is False
    assert "'cc_nowhere'" in event["message"] and "not defined" in event["message"]


def test_an_invalid_connection_setting_is_not_retryable(carecycle_emulator, carecycle_connection):
    conn_id = carecycle_connection("cc_bad_extra", host=carecycle_emulator.url, extra=json.dumps({"timeout": "soon"}))
    event = error_event_for(first_campaign(carecycle_emulator)["id"], carecycle_conn_id=conn_id, hook_params={})
    assert event["retryable"] is False
    assert "'cc_bad_extra'" in event["message"] and "timeout" in event["message"]


def test_a_connection_without_an_api_key_is_not_retryable(carecycle_emulator, carecycle_connection):
    conn_id = carecycle_connection("cc_no_key", host=carecycle_emulator.url, password="")
    event = error_event_for(first_campaign(carecycle_emulator)["id"], carecycle_conn_id=conn_id)
    assert event["retryable"] is False and "no API key" in event["message"]


class SecretsBackendUnavailable(Exception):
    """What a secrets backend client raises when its service does not answer."""


@pytest.mark.parametrize(
    "lookup_error",
    [
        SecretsBackendUnavailable("vault.internal:8200 did not answer"),
        ConnectionResetError("supervisor socket closed"),
        TimeoutError("connection lookup timed out"),
        RuntimeError("Reader loop exited"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_failed_connection_lookup_is_retryable(carecycle_emulator, monkeypatch, lookup_error):
    """A connection lookup that fails for another reason than "not defined" may work on the task's next try."""

    def failing_lookup(conn_id):
        raise lookup_error

    monkeypatch.setattr(CareCycleHook, "get_connection", staticmethod(failing_lookup))
    campaign_id = first_campaign(carecycle_emulator)["id"]
    event = error_event_for(campaign_id)
    assert event["retryable"] is True
    assert type(lookup_error).__name__ in event["message"] and campaign_id in event["message"]
    assert campaign_gets(carecycle_emulator, campaign_id) == []  # nothing was sent


def test_the_sensor_turns_error_events_into_the_right_failure(carecycle_emulator, monkeypatch):
    """A retryable event raises AirflowException (the task's retries apply); the others AirflowFailException."""
    campaign_id = first_campaign(carecycle_emulator)["id"]
    sensor = CareCycleCampaignStatsSensor(task_id="wait", campaign_id=campaign_id, threshold={"total": 1})

    missing = error_event_for(campaign_id, carecycle_conn_id="cc_nowhere")
    with pytest.raises(AirflowFailException, match="cc_nowhere"):
        sensor.execute_complete({}, missing)

    def failing_lookup(conn_id):
        raise SecretsBackendUnavailable("vault.internal:8200 did not answer")

    monkeypatch.setattr(CareCycleHook, "get_connection", staticmethod(failing_lookup))
    blip = error_event_for(campaign_id)
    with pytest.raises(AirflowException, match="SecretsBackendUnavailable") as raised:
        sensor.execute_complete({}, blip)
    assert not isinstance(raised.value, AirflowFailException)


# -- issue 25: a good citizen in a full triggerer ------------------------------------------------------------------


def test_polls_hold_no_thread_and_read_the_connection_once(carecycle_emulator, monkeypatch):
    """Many polls, one connection lookup (in sync_to_async), and no ``asyncio.to_thread``/executor use at all: the
    waits and the HTTP exchange are on the loop, so the triggerer's few threads stay free for other triggers."""
    lookups = []
    lookup = CareCycleHook.get_connection
    monkeypatch.setattr(CareCycleHook, "get_connection", staticmethod(lambda c: lookups.append(c) or lookup(c)))

    def no_threads(*args, **kwargs):
        raise AssertionError("the trigger handed work to a thread")

    campaign = first_campaign(carecycle_emulator)
    trigger = make_trigger(campaign["id"], {"total": 10**9}, end_in=1.5, poll_interval=0.05)
    polls = counting_polls(trigger)

    async def run():
        loop = asyncio.get_running_loop()
        await trigger._ready_hook()  # the one sync_to_async step
        trigger.end_time = time.time() + 1.0
        monkeypatch.setattr(asyncio, "to_thread", no_threads)
        monkeypatch.setattr(loop, "run_in_executor", no_threads)
        return await first_event(trigger)

    assert asyncio.run(run())["status"] == "timeout"
    assert len(polls) >= 3 and lookups == ["carecycle_default"]


def test_a_429s_retry_after_is_waited_on_the_loop_and_pauses_the_key(carecycle_emulator, monkeypatch):
    emu = carecycle_emulator
    campaign_id = first_campaign(emu)["id"]
    emu.configure(rate_limit=1)
    CareCycleHook(**FAST).get_campaign(campaign_id)  # the emulator's one request a minute is used up
    trigger = make_trigger(campaign_id, {"total": 1}, hook_params={**FAST, "max_retries": 1})
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def record(seconds, *args, **kwargs):
        slept.append(seconds)
        emu.configure(rate_limit=6000)  # the window "passed"
        await real_sleep(0)

    async def run():
        await trigger._ready_hook()
        monkeypatch.setattr(asyncio, "sleep", record)
        return await first_event(trigger)

    assert asyncio.run(run())["status"] == "success"
    assert slept and 0 < slept[0] <= 60  # the API's retryAfter, slept as asyncio.sleep on the loop
    assert [r["status"] for r in campaign_gets(emu, campaign_id)] == [200, 429, 200]
