"""The customerStats sensor: unit checks, then poke, reschedule and deferrable runs against the emulator."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta

import pytest

from airflow_provider_carecycle._compat import (
    AirflowException,
    AirflowFailException,
    TaskDeferred,
)
from airflow_provider_carecycle.sensors.campaigns import CareCycleCampaignStatsSensor
from airflow_provider_carecycle.triggers.campaigns import CareCycleCampaignStatsTrigger

UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"
FAST = {"requests_per_minute": 6000}  # the emulator fixture allows 6000 a minute


def sensor(**kwargs):
    kwargs.setdefault("task_id", "wait")
    kwargs.setdefault("hook_params", FAST)
    kwargs.setdefault("threshold", {"completed_ratio": 0.8})
    return CareCycleCampaignStatsSensor(**kwargs)


def first_campaign(emu):
    return emu.list_campaigns()[0]


def campaign_gets(emu, campaign_id):
    return [r for r in emu.request_log() if r["method"] == "GET" and r["path"] == f"/v2/campaigns/{campaign_id}"]


# -- constructor: validated at parse time, nothing built ------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "message"),
    [
        ({"answered": 5}, "Valid keys: total, totalCalls, todayCalls, expired, failed, pending, completed"),
        ({"completed": ("~", 5)}, "Valid operators: >=, >, <=, <, =="),
    ],
)
def test_unknown_threshold_keys_and_operators_fail_at_parse_time(threshold, message):
    with pytest.raises(ValueError) as err:
        sensor(campaign_id=UNKNOWN_ID, threshold=threshold)
    assert message in str(err.value)


def test_unknown_terminal_status_lists_valid_ones():
    with pytest.raises(ValueError, match="Valid campaign statuses: draft, active"):
        sensor(campaign_id=UNKNOWN_ID, terminal_statuses=("done",))


def test_constructor_only_stores_arguments():
    op = sensor(campaign_id="{{ params.campaign_id }}", carecycle_conn_id="nowhere")
    assert "hook" not in op.__dict__
    assert op.template_fields == ("campaign_id", "carecycle_conn_id")
    assert op.threshold == {"completed_ratio": [">=", 0.8]}


def test_deferrable_defaults_to_the_airflow_setting(monkeypatch):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert sensor(campaign_id=UNKNOWN_ID).deferrable is True
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
    assert sensor(campaign_id=UNKNOWN_ID).deferrable is False
    assert sensor(campaign_id=UNKNOWN_ID, deferrable=True).deferrable is True


# -- poke -----------------------------------------------------------------------------------------------------------


def test_poke_returns_the_stats_once_the_threshold_holds(carecycle_emulator):
    campaign = first_campaign(carecycle_emulator)
    stats = campaign["customerStats"]
    result = sensor(campaign_id=campaign["id"], threshold={"total": stats["total"]}).poke({})
    assert result.is_done
    assert result.xcom_value["id"] == campaign["id"]
    assert result.xcom_value["total"] == stats["total"]
    assert result.xcom_value["status_pending"] == stats["statusCounts"]["pending"]
    assert len(campaign_gets(carecycle_emulator, campaign["id"])) == 1


def test_poke_is_not_done_below_the_threshold(carecycle_emulator):
    campaign = first_campaign(carecycle_emulator)
    result = sensor(campaign_id=campaign["id"], threshold={"total": 10_000}).poke({})
    assert not result.is_done


def test_unknown_campaign_fails_at_once_with_its_id(carecycle_emulator):
    with pytest.raises(AirflowFailException, match=f"campaign {UNKNOWN_ID} was not found"):
        sensor(campaign_id=UNKNOWN_ID).poke({})


def test_malformed_campaign_id_fails_at_once(carecycle_emulator):
    with pytest.raises(AirflowFailException, match="campaign_id must be a careCycle UUID"):
        sensor(campaign_id="not-a-uuid").poke({})


def test_terminal_campaign_fails_at_once_unless_told_otherwise(carecycle_emulator):
    campaign = first_campaign(carecycle_emulator)
    carecycle_emulator.set_campaign_status(campaign["id"], "archived")
    with pytest.raises(AirflowFailException, match="ended without meeting the threshold: status=archived"):
        sensor(campaign_id=campaign["id"], threshold={"total": 10_000}).poke({})
    assert not sensor(campaign_id=campaign["id"], threshold={"total": 10_000}, fail_on_terminal=False).poke({}).is_done
    # a terminal campaign that met the threshold is a success, not a failure
    assert sensor(campaign_id=campaign["id"], threshold={"total": 1}).poke({}).is_done


# -- deferrable, called directly ------------------------------------------------------------------------------------


def test_deferrable_pokes_once_then_defers_with_an_end_time(carecycle_emulator):
    campaign = first_campaign(carecycle_emulator)
    op = sensor(campaign_id=campaign["id"], threshold={"total": 10_000}, deferrable=True, poke_interval=5, timeout=600)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, CareCycleCampaignStatsTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == timedelta(seconds=600)
    assert before + 600 <= trigger.end_time <= time.time() + 600
    assert trigger.poll_interval == 5
    assert trigger.serialize()[1]["threshold"] == {"total": [">=", 10_000]}
    assert len(campaign_gets(carecycle_emulator, campaign["id"])) == 1  # one poke before deferring


def test_deferrable_returns_at_once_when_the_first_poke_succeeds(carecycle_emulator):
    campaign = first_campaign(carecycle_emulator)
    stats = sensor(campaign_id=campaign["id"], threshold={"total": 1}, deferrable=True).execute({})
    assert stats["id"] == campaign["id"]


def test_deferred_poll_interval_respects_the_rate_limit(carecycle_emulator):
    campaign = first_campaign(carecycle_emulator)
    op = sensor(
        campaign_id=campaign["id"],
        threshold={"total": 10_000},
        deferrable=True,
        poke_interval=0,
        hook_params={"requests_per_minute": 120},
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})
    assert deferred.value.trigger.poll_interval == 0.5


def test_execute_complete_maps_events():
    op = sensor(campaign_id=UNKNOWN_ID)
    stats = {"id": UNKNOWN_ID, "status": "active", "total": 3}
    assert op.execute_complete({}, {"status": "success", "stats": stats}) == stats
    for status in ("terminal", "timeout"):
        with pytest.raises(AirflowFailException, match="boom"):
            op.execute_complete({}, {"status": status, "message": "boom", "stats": stats})
    with pytest.raises(AirflowFailException, match="not found"):
        op.execute_complete({}, {"status": "error", "message": "not found", "retryable": False})
    with pytest.raises(AirflowException, match="503") as err:
        op.execute_complete({}, {"status": "error", "message": "503", "retryable": True})
    assert not isinstance(err.value, AirflowFailException)  # retries allowed


# -- real DAG runs --------------------------------------------------------------------------------------------------

DAG_FILE = """
from __future__ import annotations

import json
from datetime import datetime, timezone

from airflow import DAG

from airflow_provider_carecycle._compat import BaseOperator
from airflow_provider_carecycle.sensors.campaigns import CareCycleCampaignStatsSensor


class RecordUpstreamXCom(BaseOperator):
    \"\"\"A downstream task that saves what the sensor pushed to XCom.\"\"\"

    def execute(self, context):
        with open({xcom_file!r}, "w") as out:
            json.dump(context["ti"].xcom_pull(task_ids="wait"), out)


with DAG(
    {dag_id!r},
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    params={{"campaign_id": {campaign_id!r}}},
) as dag:
    wait = CareCycleCampaignStatsSensor(
        task_id="wait", campaign_id="{{{{ params.campaign_id }}}}", hook_params={hook_params!r}, **{sensor_kwargs!r}
    )
    wait >> RecordUpstreamXCom(task_id="record")
"""


@pytest.fixture
def run_dag(run_dag_file, tmp_path):
    """Run a two-task DAG (the sensor, then a task saving its XCom) with ``dag.test()``.

    Returns ``(task states, the sensor's XCom value as the downstream task saw it)``.
    """

    def run(campaign_id, **sensor_kwargs):
        dag_id = f"campaign_stats_{uuid.uuid4().hex[:8]}"
        xcom_file = tmp_path / f"{dag_id}.xcom.json"
        source = DAG_FILE.format(
            dag_id=dag_id,
            campaign_id=campaign_id,
            xcom_file=str(xcom_file),
            hook_params=FAST,
            sensor_kwargs=sensor_kwargs,
        )
        dag_run = run_dag_file(source)
        states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
        run.dag_ids.append(dag_id)
        return states, (json.loads(xcom_file.read_text()) if xcom_file.exists() else None)

    run.dag_ids = []

    return run


def dial_after_first_poke(emu, campaign_id, speed=20.0):
    """Start the dialer only once the sensor has poked, so every mode has to wait for the threshold."""

    def run():
        deadline = time.monotonic() + 30
        while not campaign_gets(emu, campaign_id) and time.monotonic() < deadline:
            time.sleep(0.01)
        emu.configure(dialer_speed=speed)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def reschedules(dag_id):
    """How often the sensor gave its slot back to be rescheduled: the run's rows in Airflow's task_reschedule table
    (what the UI shows), one per reschedule."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session

    with create_session() as session:
        query = session.query(TaskReschedule)
        if hasattr(TaskReschedule, "dag_id"):  # Airflow 2: a row names its DAG
            query = query.filter(TaskReschedule.dag_id == dag_id)
        else:  # Airflow 3: a row points to its task instance
            query = query.join(TaskInstance, TaskReschedule.ti_id == TaskInstance.id).filter(
                TaskInstance.dag_id == dag_id
            )
        return query.count()


def task_log(capfd, caplog):
    """What the DAG run logged: ``dag.test()`` sends task and trigger logs to the console (Airflow 3) or through
    the logging tree (Airflow 2)."""
    out, err = capfd.readouterr()
    return "\n".join((out, err, caplog.text))


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_dag_run_waits_for_the_threshold(run_dag, carecycle_emulator, mode):
    emu = carecycle_emulator
    campaign = first_campaign(emu)
    target = campaign["customerStats"]["statusCounts"]["completed"] + 3
    dial_after_first_poke(emu, campaign["id"])
    states, xcom = run_dag(campaign["id"], threshold={"completed": target}, mode=mode, poke_interval=0.2, timeout=60)
    assert states == {"wait": "success", "record": "success"}
    assert xcom["id"] == campaign["id"]
    assert xcom["status_completed"] >= target
    assert len(campaign_gets(emu, campaign["id"])) >= 2  # it had to poke again
    assert (reschedules(run_dag.dag_ids[-1]) > 0) is (mode == "reschedule")


def test_dag_run_deferrable_waits_in_the_trigger(run_dag, carecycle_emulator, capfd, caplog):
    emu = carecycle_emulator
    campaign = first_campaign(emu)
    target = campaign["customerStats"]["statusCounts"]["completed"] + 3
    dial_after_first_poke(emu, campaign["id"])
    states, xcom = run_dag(
        campaign["id"], threshold={"completed": target}, deferrable=True, poke_interval=0.1, timeout=60
    )
    assert states == {"wait": "success", "record": "success"}
    assert xcom["status_completed"] >= target
    assert len(campaign_gets(emu, campaign["id"])) >= 2
    # the task resumed in execute_complete, with the trigger's event: only a deferred sensor logs this line (a poking
    # one logs "threshold met" from poke and never defers), so the worker's slot was given back while it waited
    assert f"careCycle campaign {campaign['id']} met the threshold (status=" in task_log(capfd, caplog)
    assert reschedules(run_dag.dag_ids[-1]) == 0


def test_dag_run_never_reached_threshold_times_out(run_dag, carecycle_emulator):
    campaign = first_campaign(carecycle_emulator)
    started = time.monotonic()
    states, _ = run_dag(campaign["id"], threshold={"total": 10_000}, poke_interval=0.2, timeout=1)
    assert states["wait"] == "failed"
    assert states["record"] == "upstream_failed"
    assert time.monotonic() - started < 30  # failed at the timeout, not later


def test_dag_run_deferrable_never_reached_threshold_times_out(run_dag, carecycle_emulator):
    campaign = first_campaign(carecycle_emulator)
    states, _ = run_dag(campaign["id"], threshold={"total": 10_000}, deferrable=True, poke_interval=0.2, timeout=1)
    assert states["wait"] == "failed"


@pytest.mark.parametrize("deferrable", [False, True])
def test_dag_run_campaign_cancelled_mid_wait_fails_fast(run_dag, carecycle_emulator, deferrable):
    emu = carecycle_emulator
    campaign = first_campaign(emu)

    def cancel_after_first_poke():
        while not campaign_gets(emu, campaign["id"]):
            time.sleep(0.01)
        emu.set_campaign_status(campaign["id"], "cancelled")

    threading.Thread(target=cancel_after_first_poke, daemon=True).start()
    started = time.monotonic()
    states, _ = run_dag(
        campaign["id"], threshold={"completed_ratio": 1.0}, deferrable=deferrable, poke_interval=0.2, timeout=600
    )
    assert states["wait"] == "failed"
    assert time.monotonic() - started < 60  # long before the 600 s timeout
    assert len(campaign_gets(emu, campaign["id"])) <= 5


@pytest.mark.airflow_dag
def test_dag_run_a_failed_connection_lookup_while_deferred_is_retried(
    airflow_db, carecycle_emulator, tmp_path, monkeypatch
):
    """The trigger's connection lookup fails once (a secrets backend that did not answer): the task's retry runs
    and succeeds, instead of the task failing for good."""
    from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
    from dev.dag_loader import dag_bundle_config, load_dag

    emu = carecycle_emulator
    campaign = first_campaign(emu)
    target = campaign["customerStats"]["statusCounts"]["completed"] + 1
    lookups: list[str] = []
    lookup = CareCycleHook.get_connection

    def completed():
        return emu.store.get_campaign(campaign["id"])["customerStats"]["statusCounts"]["completed"]

    def flaky_lookup(conn_id):
        lookups.append(conn_id)
        if len(lookups) == 2:  # the trigger's, after the sensor's first check on the worker
            while completed() < target:  # the campaign moves on meanwhile
                emu.tick_dialer(1)
            raise ConnectionResetError("the secrets backend did not answer")
        return lookup(conn_id)

    monkeypatch.setattr(CareCycleHook, "get_connection", staticmethod(flaky_lookup))
    dag_id = f"campaign_stats_{uuid.uuid4().hex[:8]}"
    xcom_file = tmp_path / "xcom.json"
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "retried.py").write_text(
        DAG_FILE.format(
            dag_id=dag_id,
            campaign_id=campaign["id"],
            xcom_file=str(xcom_file),
            hook_params=FAST,
            sensor_kwargs={"threshold": {"completed": target}, "deferrable": True, "poke_interval": 0.1, "timeout": 60},
        )
    )
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", dag_bundle_config(dags))
    dag = load_dag(dags / "retried.py", dag_id)
    dag.get_task("wait").retries = 1
    dag.get_task("wait").retry_delay = timedelta(0)

    dag_run = dag.test()

    wait = dag_run.get_task_instance("wait")
    assert {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()} == {
        "wait": "success",
        "record": "success",
    }
    assert wait.try_number == 2  # the first try failed on the lookup; the retry succeeded
    assert len(lookups) >= 2
    assert json.loads(xcom_file.read_text())["status_completed"] >= target
