"""The customerStats sensor and its trigger never meet a threshold on a bad answer (issue 20, item 5).

A scripted server answers ``GET /v2/campaigns/{id}`` with an answer that a careless reader would take for "threshold
met": about another campaign, without ``customerStats`` or the figure the threshold counts (read as 0, which meets
``pending <= 0``), or with a count that is negative, a fraction, text, a boolean, ``NaN`` or infinite. Each is a
malformed answer: the poking sensor raises the retryable :class:`CareCycleMalformedAnswerError` (the task's retries
apply), the deferred trigger ends with a retryable error event; the message names the campaign and the field, and
never the value the server sent.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_carecycle._compat import AirflowException, AirflowFailException
from airflow_provider_carecycle.exceptions import CareCycleMalformedAnswerError
from airflow_provider_carecycle.operators.campaigns import CareCycleCampaignSnapshotOperator
from airflow_provider_carecycle.sensors.campaigns import CareCycleCampaignStatsSensor
from airflow_provider_carecycle.triggers.campaigns import CareCycleCampaignStatsTrigger
from tests.adversarial.hostile_server import Reply

CAMPAIGN_ID = "1369e7fe-6ed5-49b5-8b46-243bf8918958"
OTHER_ID = "9f0c1d2e-3b4a-4c5d-8e6f-7a8b9c0d1e2f"
CONN = "hostile_sensor"
#: every threshold a bad answer below would meet if its bad figure were read as 0 (or as int() of it)
THRESHOLD = {"pending": ("<=", 0), "completed": 2}
#: a marker a hostile server puts in a bad figure: it must reach no message or log line
ECHO = "Zebulon Quackenbush"


def stats(**changes):
    counts = {"expired": 0, "failed": 0, "pending": 0, "completed": 5, "in_progress": 0}
    body = {"total": 5, "totalCalls": 9, "todayCalls": 1, "statusCounts": counts}
    for dotted, value in changes.items():
        target, key = (counts, dotted[len("statusCounts.") :]) if dotted.startswith("statusCounts.") else (body, dotted)
        if value is ...:
            target.pop(key)
        else:
            target[key] = value
    return body


def campaign(campaign_id=CAMPAIGN_ID, customer_stats=None, **fields):
    return {"id": campaign_id, "name": "T65", "status": "active", "customerStats": customer_stats or stats(), **fields}


def answer(body):
    return Reply(200, {"campaign": body})


# (case id, the campaign object the server sends, the field the message must name)
BAD_ANSWERS = [
    ("another-campaign", campaign(OTHER_ID), "'id' names another campaign"),
    ("no-id", {k: v for k, v in campaign().items() if k != "id"}, "'id' is missing"),
    ("no-customerStats", {k: v for k, v in campaign().items() if k != "customerStats"}, "no 'customerStats'"),
    ("customerStats-null", campaign(customer_stats=None) | {"customerStats": None}, "no 'customerStats'"),
    ("customerStats-text", campaign() | {"customerStats": ECHO}, "no 'customerStats'"),
    ("statusCounts-missing", campaign(customer_stats=stats(statusCounts=...)), "'customerStats.statusCounts.pending'"),
    ("statusCounts-list", campaign(customer_stats=stats(statusCounts=[ECHO])), "'customerStats.statusCounts' is not"),
    ("pending-missing", campaign(customer_stats=stats(**{"statusCounts.pending": ...})), "statusCounts.pending' is"),
    ("pending-null", campaign(customer_stats=stats(**{"statusCounts.pending": None})), "statusCounts.pending' is null"),
    ("pending-negative", campaign(customer_stats=stats(**{"statusCounts.pending": -3})), "pending' is negative"),
    ("pending-false", campaign(customer_stats=stats(**{"statusCounts.pending": False})), "pending' is a boolean"),
    ("pending-text", campaign(customer_stats=stats(**{"statusCounts.pending": ECHO})), "pending' is a JSON string"),
    ("pending-digits", campaign(customer_stats=stats(**{"statusCounts.pending": "7"})), "pending' is a JSON string"),
    ("completed-fraction", campaign(customer_stats=stats(**{"statusCounts.completed": 2.5})), "not a whole number"),
    ("completed-true", campaign(customer_stats=stats(**{"statusCounts.completed": True})), "completed' is a boolean"),
    ("completed-nan", campaign(customer_stats=stats(**{"statusCounts.completed": float("nan")})), "not a whole num"),
    ("completed-inf", campaign(customer_stats=stats(**{"statusCounts.completed": float("inf")})), "not a whole num"),
    ("total-negative", campaign(customer_stats=stats(total=-1)), "'customerStats.total' is negative"),
    ("uncounted-object", campaign(customer_stats=stats(todayCalls={"n": ECHO})), "todayCalls' is a JSON object"),
]


@pytest.fixture
def hostile_campaign(hostile_server, carecycle_connection):
    """``hostile_campaign(body)``: a server answering every campaign request with ``body``; returns the server."""

    def start(body):
        server = hostile_server(script=lambda request: answer(body))
        carecycle_connection(CONN, host=server.url, extra={"requests_per_minute": 100000})
        return server

    return start


def sensor(**kwargs):
    return CareCycleCampaignStatsSensor(
        task_id="wait",
        campaign_id=CAMPAIGN_ID,
        threshold=THRESHOLD,
        carecycle_conn_id=CONN,
        poke_interval=1,
        timeout=30,
        **kwargs,
    )


def assert_clear(message: str, field: str) -> None:
    assert CAMPAIGN_ID in message
    assert field in message
    assert ECHO not in message and "'7'" not in message and "2.5" not in message and OTHER_ID not in message


@pytest.mark.parametrize(("body", "field"), [pytest.param(b, f, id=i) for i, b, f in BAD_ANSWERS])
def test_poking_sensor_never_meets_a_threshold_on_a_bad_answer(hostile_campaign, captured_logs, body, field):
    server = hostile_campaign(body)
    with pytest.raises(CareCycleMalformedAnswerError) as err:
        sensor().poke({})
    assert err.value.retryable and not isinstance(err.value, AirflowFailException)
    assert_clear(str(err.value), field)
    assert ECHO not in captured_logs()
    assert len(server.requests) == 1  # one answer read, not sent again by the hook


async def _first_event(trigger):
    async for event in trigger.run():
        return event.payload
    return None


@pytest.mark.parametrize(("body", "field"), [pytest.param(b, f, id=i) for i, b, f in BAD_ANSWERS])
def test_deferred_trigger_never_meets_a_threshold_on_a_bad_answer(hostile_campaign, captured_logs, body, field):
    hostile_campaign(body)
    trigger = CareCycleCampaignStatsTrigger(
        campaign_id=CAMPAIGN_ID,
        threshold=THRESHOLD,
        end_time=time.time() + 30,
        carecycle_conn_id=CONN,
        hook_params={"requests_per_minute": 100000},
        poll_interval=0.01,
    )
    event = asyncio.run(asyncio.wait_for(_first_event(trigger), timeout=20))
    assert event["status"] == "error" and event["retryable"] is True, event
    assert_clear(event["message"], field)
    assert ECHO not in captured_logs()
    # the sensor resumed with this event raises a retryable AirflowException, not AirflowFailException
    with pytest.raises(AirflowException) as err:
        sensor().execute_complete({}, event)
    assert not isinstance(err.value, AirflowFailException)


def test_a_whole_float_count_is_that_count(hostile_campaign):
    """JSON does not tell 5 from 5.0: a count sent as 5.0 reads as 5 (met), not as malformed."""
    hostile_campaign(campaign(customer_stats=stats(**{"statusCounts.completed": 5.0, "statusCounts.pending": 0.0})))
    done = sensor().poke({})
    assert done.is_done and done.xcom_value["status_completed"] == 5


def test_a_good_answer_still_meets_the_threshold(hostile_campaign):
    hostile_campaign(campaign(CAMPAIGN_ID.upper()))  # the id in another case is the same campaign
    assert sensor().poke({}).is_done


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (campaign(OTHER_ID), "'id' names another campaign"),
        (campaign() | {"customerStats": None}, "no 'customerStats'"),
        (campaign(customer_stats=stats(totalCalls=-4)), "'customerStats.totalCalls' is negative"),
        (campaign(customer_stats=stats(**{"statusCounts.failed": "3"})), "statusCounts.failed' is a JSON string"),
    ],
)
def test_snapshot_refuses_the_same_bad_answers(hostile_campaign, tmp_path, body, field):
    """The snapshot shares the reading: a bad answer fails the task (retryable) and writes no row of zeros."""
    hostile_campaign(body)
    out = tmp_path / "snapshot.jsonl"
    op = CareCycleCampaignSnapshotOperator(
        task_id="snap", campaign_ids=[CAMPAIGN_ID], output_path=str(out), carecycle_conn_id=CONN
    )
    with pytest.raises(CareCycleMalformedAnswerError) as err:
        op.execute({})
    assert_clear(str(err.value), field)
    assert not out.exists()
    assert not list(tmp_path.iterdir())  # no temporary file either
