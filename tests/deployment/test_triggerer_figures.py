"""``make test-triggerer``: a real Airflow triggerer carrying N deferred campaign sensors on one key, with a canary.

One deployment (the line of the venv, 3.3 in ``make test-triggerer``), runs one after the other (``FIGURES_FLAVOURS``):
N of Airflow's own ``DateTimeTrigger`` as a control (what the triggerer costs without careCycle), N sensors with the
stats trigger as it was before issue 25 (each poll in ``asyncio.to_thread``), then N with today's, each next to a
canary trigger calling ``asyncio.to_thread`` once a second. The run's tasks are deferred into the
triggerer as a worker's ``TaskDeferred`` defers them (``triggerer_figures/defer.py`` writes what the execution API
writes), so no worker process starts per sensor and the triggerer loads exactly what a deferred
``CareCycleCampaignStatsSensor`` gives it. The emulator allows 60 requests per compressed window, as does the
connection. Printed per run: the canary's ``to_thread`` wait p99, the triggerer's "blocked" warnings (while the
triggers load, and while they run), requests per window / limit and 429s, each sensor's longest gap between polls /
even share, the RSS the triggers added to the triggerer's processes, and the pacer's INFO lines saying the polls are
stretched (in the trigger logs, where Airflow 3 sends what a trigger logs). A probe (``gc_probe/sitecustomize.py``)
records the trigger runner's full garbage collections: a "blocked" warning that none of them explains is a blocking
call, and fails the test.

Why the tasks are not ``start_from_trigger`` tasks: for those, Airflow sends each trigger its whole serialized DAG and
the trigger runner deserializes it on its event loop and keeps it, once per trigger (with 500 sensors in one DAG,
500 copies of a 501-task DAG: seconds of blocked loop and well over a gigabyte), which measures Airflow's
``start_from_trigger`` path, not the sensor's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from tests.deployment.deployment import Deployment, airflow_env, free_port, wait_for

SENSORS = int(os.environ.get("FIGURES_SENSORS", "500"))
PHASE_S = float(os.environ.get("FIGURES_PHASE_S", "60"))
#: "control" (Airflow's DateTimeTrigger), "threaded" (the trigger before issue 25) and "async" (today's), in order
FLAVOURS = os.environ.get("FIGURES_FLAVOURS", "control threaded async").split()
LIMIT, WINDOW_S = 60, 3.0
HERE = Path(__file__).resolve().parent / "triggerer_figures"
GC_PROBE = Path(__file__).resolve().parent / "gc_probe"


def rss_mb(process: psutil.Process) -> float:
    tree = [process, *process.children(recursive=True)]
    return sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20


def campaign_requests(emu) -> list[dict]:
    return [r for r in emu.request_log() if r["path"].startswith("/v2/campaigns/")]


BLOCKED = re.compile(r"^(\S+) \[\w+\s*\] Triggerer's async thread was blocked for ([0-9.]+) seconds", re.M)
#: Airflow's watchdog sleeps 0.1 s and reports the whole time it took: a pause of the loop is that minus 0.1 s
WATCHDOG_SLEEP_S = 0.1


def blocked(text: str) -> list[tuple[float, float]]:
    """The triggerer's "async thread was blocked" warnings in ``text``: (when, seconds reported)."""
    return [
        (datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp(), float(s)) for ts, s in BLOCKED.findall(text)
    ]


def full_collections(probe_dir: Path, pids: set[int]) -> list[dict[str, float]]:
    """The full garbage collections the probe (``gc_probe/sitecustomize.py``) saw in the processes ``pids``."""
    pauses = []
    for pid in pids:
        path = probe_dir / f"gc-{pid}.jsonl"
        if path.exists():
            pauses += [json.loads(line) for line in path.read_text().splitlines() if line]
    return pauses


def explained_by_gc(warning: tuple[float, float], pauses: list[dict[str, float]]) -> bool:
    """Whether a full collection of the trigger runner ended inside the blocked interval and took at least half of
    the pause reported (the rest is the loop waiting for a core on a shared machine)."""
    at, reported = warning
    pause = reported - WATCHDOG_SLEEP_S
    return any(at - reported - 0.05 <= p["end"] <= at + 0.05 and p["took"] >= pause / 2 for p in pauses)


def blocked_figures(
    warnings: list[tuple[float, float]], pauses: list[dict[str, float]], phase: str, since: float, until: float
) -> dict:
    """Per phase (from ``since`` to ``until``, epoch seconds): the warnings, how many a full collection of the trigger
    runner explains, the longest pause reported and the longest full collection."""
    during = [p for p in pauses if since <= p["end"] <= until]
    return {
        f"blocked_warnings{phase}": len(warnings),
        f"blocked_by_full_gc{phase}": sum(1 for w in warnings if explained_by_gc(w, pauses)),
        f"blocked_longest_s{phase}": max((w[1] for w in warnings), default=0.0),
        f"full_gc_longest_s{phase}": max((p["took"] for p in during), default=0.0),
    }


def trigger_logs(home: Path, dag_id: str) -> list[str]:
    """The trigger logs of ``dag_id``'s tasks (Airflow 3 writes what a trigger logs there, one file per task)."""
    return [path.read_text(errors="replace") for path in (home / "logs" / f"dag_id={dag_id}").rglob("*.trigger.*")]


def stretch_lines(home: Path, dag_id: str) -> int:
    """The pacer's "stretched" INFO lines in the trigger logs of ``dag_id``'s tasks."""
    return sum(text.count("are stretched to that") for text in trigger_logs(home, dag_id))


def figures(emu, campaigns: list[str], canary_file: Path) -> dict[str, float]:
    log = campaign_requests(emu)
    at = {id(r): datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).timestamp() for r in log}
    ok = sorted(at[id(r)] for r in log if r["status"] == 200)
    worst = max((sum(1 for t in ok[i:] if t - start < WINDOW_S) for i, start in enumerate(ok)), default=0)
    polls: dict[str, list[float]] = defaultdict(list)
    for r in log:
        polls[r["path"].rsplit("/", 1)[1]].append(at[id(r)])
    gaps = [b - a for times in polls.values() for a, b in zip(times, times[1:], strict=False)]
    waits = [json.loads(line)["wait"] for line in canary_file.read_text().splitlines()] if canary_file.exists() else []
    return {
        "canary_p99_ms": 1000 * (statistics.quantiles(waits, n=100)[98] if len(waits) > 1 else float("nan")),
        "canary_calls": len(waits),
        "per_window": worst / LIMIT,
        "429s": sum(1 for r in log if r["status"] == 429),
        "gap_ratio": max(gaps, default=float("nan")) / (len(campaigns) * WINDOW_S / LIMIT),
        "sensors_polled": sum(1 for c in campaigns if len(polls.get(c, [])) >= 2),
    }


@pytest.mark.skipif(os.environ.get("CARECYCLE_TEST_TRIGGERER") != "1", reason="make test-triggerer only")
def test_a_triggerer_full_of_carecycle_sensors(tmp_path):
    from carecycle_emulator import CareCycleEmulator

    emu = CareCycleEmulator(api_keys=("cc_test_key",), rate_limit=LIMIT, rate_window_s=WINDOW_S).start()
    campaigns = [emu.add_campaign(name=f"figures {n}", status="active")["id"] for n in range(SENSORS)]
    home, dags = tmp_path / "home", tmp_path / "dags"
    home.mkdir()
    dags.mkdir()
    for name in ("figures_dag.py", "figures_triggers.py", "defer.py"):
        shutil.copy(HERE / name, dags / name)
    api_port = free_port()
    connection = emu.airflow_connection("cc_test_key", requests_per_minute=LIMIT, rate_limit_dir=str(tmp_path / "rl"))
    probe = tmp_path / "gc"
    probe.mkdir()
    env = airflow_env(
        home, api_port, dags, {"AIRFLOW_CONN_CARECYCLE_DEFAULT": connection}, pythonpath=f"{dags}{os.pathsep}{GC_PROBE}"
    )
    canary = tmp_path / "canary"
    env.update(
        {
            "CARECYCLE_GC_PROBE_DIR": str(probe),
            "FIGURES_CAMPAIGNS": json.dumps(campaigns),
            "FIGURES_CANARY_FILE": str(canary),
            "FIGURES_WINDOW_S": str(WINDOW_S),
            "FIGURES_PHASE_S": str(PHASE_S),
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__TRIGGERER__CAPACITY": str(SENSORS + 10),
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        }
    )
    deployment = Deployment(home, env, api_port)
    results = {}
    try:
        deployment.run("db", "migrate", timeout=600)
        deployment.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "1")
        deployment.start("dag-processor", "dag-processor")
        deployment.start("scheduler", "scheduler", "--skip-serve-logs")
        deployment.start("triggerer", "triggerer", "--skip-serve-logs")
        wait_for("the API server", lambda: deployment.get("/monitor/health"), deployment, 180)
        triggerer = psutil.Process(deployment.processes["triggerer"].pid)
        for flavour in FLAVOURS:
            dag_id = f"figures_{flavour}"
            wait_for(f"{dag_id} parsed", lambda d=dag_id: deployment.get(f"/dags/{d}"), deployment, 300)
            emu.log.clear()
            emu.rate_limiter.clear()
            before = rss_mb(triggerer)
            out_before = len(deployment.output("triggerer"))
            # the DAG stays paused (its tasks never go to a worker): the run's task instances are deferred as a
            # worker's TaskDeferred defers them
            run_id = deployment.send("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None})["dag_run_id"]
            loading, loading_at = time.monotonic(), time.time()
            deferred = subprocess.run(
                [sys.executable, str(dags / "defer.py"), dag_id, run_id, flavour],
                env=env,
                cwd=home,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert deferred.returncode == 0, deferred.stdout[-3000:] + deferred.stderr[-3000:]

            def every_sensor_polled() -> bool:
                return len({r["path"] for r in campaign_requests(emu)}) >= SENSORS

            def every_trigger_started(dag_id: str = dag_id) -> bool:  # the control's triggers send no request
                return sum(1 for text in trigger_logs(home, dag_id) if " starting" in text) >= SENSORS + 1

            loaded = every_trigger_started if flavour == "control" else every_sensor_polled
            wait_for(f"{SENSORS} sensors' first polls", loaded, deployment, 900, every=2)
            loaded_s = time.monotonic() - loading
            runner = {child.pid for child in triggerer.children(recursive=True)}
            load_blocked = blocked(deployment.output("triggerer")[out_before:])
            # the measurement: PHASE_S seconds once every sensor runs
            emu.log.clear()
            canary_file = canary.with_name(f"canary.{flavour}")
            canary_file.write_text("")
            out_steady, steady_at = len(deployment.output("triggerer")), time.time()
            time.sleep(PHASE_S)
            pauses = full_collections(probe, runner)
            results[flavour] = {
                **figures(emu, campaigns, canary_file),
                **blocked_figures(
                    blocked(deployment.output("triggerer")[out_steady:]), pauses, "", steady_at, time.time()
                ),
                **blocked_figures(load_blocked, pauses, "_while_loading", loading_at, steady_at),
                "rss_added_mb": rss_mb(triggerer) - before,
                "loaded_s": loaded_s,
                "stretch_lines": stretch_lines(home, dag_id),
            }
            print(f"\n== {flavour}: {json.dumps(results[flavour])}", flush=True)
            for run in deployment.get(f"/dags/{dag_id}/dagRuns")["dag_runs"]:
                deployment.send("PATCH", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}", {"state": "failed"})
            quiet_since, seen = time.monotonic(), len(emu.request_log())
            while time.monotonic() - quiet_since < 10:  # the triggers are gone once the requests stop
                time.sleep(1)
                if len(emu.request_log()) != seen:
                    quiet_since, seen = time.monotonic(), len(emu.request_log())
        deployment.check_alive()
    finally:
        deployment.stop()
        emu.stop()
    print(json.dumps(results, indent=1))
    if "async" in results:  # today's trigger: the goals that are behaviour, not machine speed
        now = results["async"]
        assert now["429s"] == 0 and now["per_window"] <= 1.0, now
        assert now["sensors_polled"] == SENSORS and now["gap_ratio"] <= 1.5, now  # no sensor starves
        # no blocking call on the loop: every "blocked" warning, if any, is a full garbage collection of the trigger
        # runner (Airflow's heap: a few hundred thousand objects), which the test cannot make shorter
        assert now["blocked_warnings"] == now["blocked_by_full_gc"], now
        assert now["blocked_warnings_while_loading"] == now["blocked_by_full_gc_while_loading"], now
        assert now["canary_p99_ms"] <= 100, now
        assert now["stretch_lines"] == 1, now  # one INFO line, no per-poll noise
