"""One API key, two Celery workers: the key's rate limit on a real CeleryExecutor deployment (make test-distributed).

The test installs what is missing (``redis-server`` and ``postgresql`` from Debian's packages; root and apt-get
needed then), and starts in one temporary folder, on loopback ports picked at run time:

* Postgres (run as the ``postgres`` user when this runs as root; password auth, TCP on 127.0.0.1 only): Airflow's
  metadata DB and the Celery result backend;
* Redis (password, no persistence): the Celery broker (db 0) and the Redis limiter backend (db 1);
* the careCycle emulator with careCycle's strict per-key limit of 60 requests per window, the window compressed
  from 60 s to ``WINDOW_S`` (its ``retryAfter`` is the time until a slot frees, so it shrinks with it);
* Airflow 3 with the CeleryExecutor: ``db migrate``, ``api-server``, ``scheduler``, ``dag-processor`` and two
  ``celery worker`` processes (2 slots each). Each worker has its own environment: its own
  ``AIRFLOW_CONN_CARECYCLE_<SETUP>`` connections, whose ``rate_limit_dir`` differs between the workers where the
  setup wants two hosts.

Then it runs the DAG of :mod:`tests.distributed.distributed_upload_dag` (4 parallel upload tasks, 5,000 leads each,
one key) once per limiter setup, one after the other, waiting out the window in between:

1. ``process``: today's per-process limiter (``rate_limit_backend: "process"``), only reported;
2. ``host``: one host, the host-wide limiter (both workers share one ``rate_limit_dir``);
3. ``adaptive``: two hosts (one ``rate_limit_dir`` per worker), adaptive pacing only;
4. ``redis``: two hosts, the Redis backend.

Everything is measured on the emulator's side, from its request log and its store: the combined accepted rate as a
ratio of the key's ceiling, the 429s per request, and the leads lost or doubled. It prints the table of issue 15 and
asserts its goals. Every process it started is stopped (process groups, ``pg_ctl stop``, the Redis server) and the
temporary folder removed, also when it fails.
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import glob
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from carecycle_emulator.phones import us_phone
from tests.deployment.test_real_deployment import (
    START_TIMEOUT_S,
    Deployment,
    airflow_env,
    free_port,
    wait_for,
    wait_for_dag_run,
)
from tests.distributed import distributed_upload_dag as dags
from tests.distributed.conftest import ROOT
from tests.hooks.ratelimit.test_redis import start_redis, stop_redis

pytestmark = pytest.mark.deployment

DAG_FILE = Path(dags.__file__)
UPLOAD_PATH = "/v2/leads/upload"
API_KEY = f"cc_{secrets.token_hex(12)}"
WORKERS = ("worker-1", "worker-2")
#: upper bound of one setup's run (about 45 s each on an idle machine)
RUN_TIMEOUT_S = 360

LABELS = {
    "process": "today's per-process limiter (measured side by side in the same run)",
    "host": "one host, host-wide limiter",
    "adaptive": "two hosts, adaptive pacing only",
    "redis": "two hosts, Redis backend",
}
#: the goals of issue 15: least combined rate / key ceiling, most 429s per request (None: only reported)
GOALS: dict[str, tuple[float | None, float | None]] = {
    "process": (None, None),
    "host": (0.95, 0.0),
    "adaptive": (0.85, 0.05),
    "redis": (0.95, 0.0),
}


# -- services ------------------------------------------------------------------------------------------------------


def debian_binary(name: str, package: str, search: Iterable[str] = ()) -> str:
    """The path of the program ``name``: on the PATH, else the newest match of ``search``; ``apt-get install``ed
    from Debian's ``package`` when missing (root and apt-get needed then).

    :param name: the program.
    :param package: the Debian package that has it.
    :param search: glob patterns where the package puts it off the PATH.
    """

    def find() -> str | None:
        for pattern in search:
            # the newest version folder first: /usr/lib/postgresql/<version>/bin/...
            found = sorted(glob.glob(pattern), key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
            if found:
                return found[-1]
        return shutil.which(name)

    path = find()
    if path is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise RuntimeError(f"{name} is not installed and cannot be here (needs root): apt-get install -y {package}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
        if subprocess.run(install, capture_output=True, env=env, timeout=900).returncode != 0:
            # a fresh machine may not have package lists yet
            subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, env=env, timeout=900)
            subprocess.run(install, check=True, capture_output=True, env=env, timeout=900)
        path = find()
    if path is None:
        raise RuntimeError(f"apt-get install {package} did not provide {name}")
    return path


class Postgres:
    """A throwaway Postgres cluster in ``folder``: password auth, TCP on 127.0.0.1 only (no Unix socket).

    Its programs run as the ``postgres`` user when this process is root (Postgres refuses to run as root).

    :param folder: where the cluster lives (created here).
    """

    def __init__(self, folder: Path) -> None:
        initdb = Path(debian_binary("initdb", "postgresql", ["/usr/lib/postgresql/*/bin/initdb"])).resolve()
        self.initdb, self.pg_ctl = str(initdb), str(initdb.with_name("pg_ctl"))
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.user = "postgres" if os.geteuid() == 0 else None
        self.started = False

    def url(self, scheme: str = "postgresql+psycopg2") -> str:
        return f"{scheme}://airflow:{self.password}@127.0.0.1:{self.port}/airflow"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            args, user=self.user, cwd=self.folder, capture_output=True, text=True, timeout=120, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} ... failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def start(self) -> None:
        self.folder.mkdir(mode=0o700)
        password_file = self.folder / "password"
        password_file.write_text(self.password)
        if self.user is not None:
            account = pwd.getpwnam(self.user)
            os.chmod(self.folder.parent, 0o711)  # let the postgres user reach its folder, and list nothing
            for path in (self.folder, password_file):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._run(
            *(self.initdb, "-D", str(self.data), "-U", "airflow", "-E", "UTF8", "--no-sync"),
            *("--auth=scram-sha-256", f"--pwfile={password_file}"),
        )
        password_file.unlink()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self.started = True  # stop() tries even when the start times out
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.folder / "postgres.log"), "-o", options, "-w",
                  "-t", "60", "start")  # fmt: skip
        import psycopg2

        connection = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="airflow", password=self.password, dbname="postgres"
        )
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("CREATE DATABASE airflow")
        finally:
            connection.close()

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        stopped = self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop", check=False)
        if stopped.returncode != 0 and "PID file" not in stopped.stderr:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)


@dataclass
class Redis:
    """The test's ``redis-server``: db 0 is Celery's broker, db 1 the Redis limiter's."""

    port: int
    password: str
    process: subprocess.Popen

    def url(self, db: int) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"


def start_redis_server(folder: Path) -> Redis:
    """A throwaway ``redis-server`` on loopback with a password, no persistence (installed when missing)."""
    debian_binary("redis-server", "redis-server")
    folder.mkdir(mode=0o700)
    port, password = free_port(), secrets.token_hex(16)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    process = start_redis(port, "--requirepass", password, "--dir", str(folder), url=url)
    return Redis(port, password, process)


# -- the deployment ------------------------------------------------------------------------------------------------


class CeleryDeployment(Deployment):
    """The Airflow processes; a worker gets an environment of its own (its connections: its host's settings)."""

    def start_with_env(self, name: str, env: dict[str, str], *args: str) -> None:
        shared, self.env = self.env, env
        try:
            self.start(name, *args)
        finally:
            self.env = shared

    def received(self, worker: str) -> int:
        """How many tasks ``worker`` has received so far (from its log)."""
        return len(re.findall(r"Task \S+\[[0-9a-f-]+\] received", self.output(worker)))


def worker_connections(emu: Any, redis: Redis, worker: str) -> dict[str, str]:
    """The ``AIRFLOW_CONN_CARECYCLE_<SETUP>`` variables of ``worker``: one connection per setup, same key and URL.

    :param emu: the careCycle emulator.
    :param redis: the Redis server (db 1 is the limiter's).
    :param worker: the worker's name; its own ``rate_limit_dir`` where the setup wants two hosts.
    """
    folders = ROOT / "rate-limits"
    extras = {
        "process": {"rate_limit_backend": "process", "rate_limit_dir": str(folders / f"process-{worker}")},
        "host": {"rate_limit_dir": str(folders / "host-shared")},
        "adaptive": {"rate_limit_dir": str(folders / f"adaptive-{worker}")},
        "redis": {"rate_limit_backend": redis.url(1), "rate_limit_dir": str(folders / f"redis-{worker}")},
    }
    return {
        f"AIRFLOW_CONN_{dags.conn_id(setup).upper()}": emu.airflow_connection(API_KEY, **extras[setup])
        for setup in dags.SETUPS
    }


@dataclass
class Stack:
    emulator: Any
    deployment: CeleryDeployment
    data_uri: str


def write_leads(folder: Path) -> list[str]:
    """One JSON Lines file of :data:`LEADS_PER_TASK` distinct valid leads per task; return every ``externalId``."""
    folder.mkdir(mode=0o700)
    ids = []
    for task in range(1, dags.TASKS + 1):
        with (folder / f"leads-{task}.jsonl").open("w") as out:
            for i in range((task - 1) * dags.LEADS_PER_TASK, task * dags.LEADS_PER_TASK):
                ids.append(f"dist-{i:05d}")
                lead = {
                    "externalId": ids[-1],
                    "phoneNumber": us_phone(i),
                    "postalCode": "33101",
                    "firstName": f"First{i}",
                    "lastName": "Distributed",
                    "dateOfBirth": "06-15-1950",
                }
                out.write(json.dumps(lead) + "\n")
    return ids


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """Postgres, Redis, the emulator and the Airflow deployment, up; all stopped afterwards, whatever happened."""
    from carecycle_emulator import CareCycleEmulator

    with contextlib.ExitStack() as stop:
        atexit.register(stop.close)  # also when the run is cut short
        stop.callback(atexit.unregister, stop.close)
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run cleans up too
        stop.callback(signal.signal, signal.SIGTERM, previous)
        started = time.monotonic()

        postgres = Postgres(ROOT / "postgres")
        stop.callback(postgres.stop)
        postgres.start()
        redis = start_redis_server(ROOT / "redis")
        stop.callback(stop_redis, redis.process)
        emu = stop.enter_context(
            CareCycleEmulator(
                api_keys=(API_KEY,), rate_limit=dags.RATE, rate_window_s=dags.WINDOW_S, customers=0, campaigns=1
            )
        )

        home, dag_folder = ROOT / "airflow-home", ROOT / "dags"
        home.mkdir(mode=0o700)
        dag_folder.mkdir()
        shutil.copy(DAG_FILE, dag_folder / DAG_FILE.name)
        api_port = free_port()
        env = airflow_env(home, api_port, dag_folder, {})
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url(),
                "AIRFLOW__CELERY__BROKER_URL": redis.url(0),
                "AIRFLOW__CELERY__RESULT_BACKEND": postgres.url("db+postgresql+psycopg2"),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            }
        )
        deployment = CeleryDeployment(home, env, api_port)
        stop.callback(deployment.stop)
        deployment.run("db", "migrate", timeout=600)
        deployment.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "1")
        deployment.start("dag-processor", "dag-processor")
        deployment.start("scheduler", "scheduler", "--skip-serve-logs")
        for worker in WORKERS:
            deployment.start_with_env(
                worker,
                {**env, **worker_connections(emu, redis, worker)},
                *("celery", "worker", "--concurrency", "2", "--celery-hostname", f"{worker}@%h"),
                *("--pid", str(home / f"{worker}.pid"), "--skip-serve-logs", "--without-mingle", "--without-gossip"),
            )
        wait_for("the API server", lambda: deployment.get("/monitor/health"), deployment, START_TIMEOUT_S)
        for setup in dags.SETUPS:
            dag = dags.dag_id(setup)
            wait_for(f"the DAG {dag} to be parsed", lambda d=dag: deployment.get(f"/dags/{d}"), deployment, 240)
        for worker in WORKERS:
            wait_for(f"{worker} to be ready", lambda w=worker: " ready." in deployment.output(w), deployment, 240)
        print(
            f"\nPostgres, Redis, the emulator and Airflow (2 Celery workers) up in {time.monotonic() - started:.0f} s"
        )
        yield Stack(emu, deployment, (ROOT / "data").as_uri())


# -- one run, and its figures --------------------------------------------------------------------------------------


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def sustained_ratio(times: list[float], limit: int, window_s: float) -> float:
    """The combined accepted rate as a ratio of the key's ceiling (``limit`` per ``window_s``), from the first
    accepted request to the last one that starts a new window's worth (as the benchmarks measure it).

    A sliding-window limit lets the ``k``-th accepted request (``k`` a multiple of ``limit``) go ``k / limit``
    windows after the first at the earliest, so ``k / (t_k - t_0) x window / limit`` is at most 1; counting every
    request over the whole span would credit the first window's burst and exceed 1.

    :param times: when each accepted request arrived.
    :param limit: requests per window.
    :param window_s: the window in seconds.
    """
    times = sorted(times)
    k = (len(times) - 1) // limit * limit
    assert k > 0, f"{len(times)} accepted requests do not span a window of {limit}"
    return k / (times[k] - times[0]) * window_s / limit


def _xcom_value(value: Any) -> Any:
    if isinstance(value, str):
        with contextlib.suppress(ValueError, SyntaxError):
            return json.loads(value)
        return ast.literal_eval(value)
    return value


def run_setup(stack: Stack, setup: str, lead_ids: list[str]) -> dict[str, Any]:
    """Run the setup's DAG once on a fresh emulator and measure it; return its figures."""
    emu, deployment = stack.emulator, stack.deployment
    emu.reset(customers=0, campaigns=1)  # an empty store, log and rate window
    received = {worker: deployment.received(worker) for worker in WORKERS}
    dag = dags.dag_id(setup)
    deployment.send("PATCH", f"/dags/{dag}", {"is_paused": False})
    started = time.monotonic()
    run = deployment.send(
        "POST",
        f"/dags/{dag}/dagRuns",
        {
            "dag_run_id": f"{setup}_{secrets.token_hex(4)}",
            "logical_date": datetime.now(timezone.utc).isoformat(),
            "conf": {"data_dir": stack.data_uri},
        },
    )
    run_path = f"/dags/{dag}/dagRuns/{run['dag_run_id']}"

    state = wait_for_dag_run(deployment, run_path, f"{setup}: the run of {dag}", RUN_TIMEOUT_S)["state"]
    elapsed = time.monotonic() - started
    deployment.send("PATCH", f"/dags/{dag}", {"is_paused": True})
    assert state == "success", f"{setup}: the run ended {state}"
    summaries = [
        _xcom_value(deployment.get(f"{run_path}/taskInstances/upload_{n}/xcomEntries/return_value")["value"])
        for n in range(1, dags.TASKS + 1)
    ]

    uploads = [e for e in emu.request_log() if e["path"] == UPLOAD_PATH]
    accepted = [e for e in uploads if e["status"] == 200]
    held = emu.get_customers_by_external_id()
    present = [i for i in lead_ids if i in held]
    reported = sum(s["uploaded"] for s in summaries)
    on_the_wire = Counter(i for e in accepted for i in e["batch"]["external_ids"])
    figures = {
        "setup": setup,
        "elapsed_s": elapsed,
        "requests": len(uploads),
        "answers_429": sum(1 for e in uploads if e["status"] == 429),
        "other_errors": sum(1 for e in uploads if e["status"] not in (200, 429)),
        "ratio": sustained_ratio([_epoch(e["ts"]) for e in accepted], dags.RATE, dags.WINDOW_S),
        "lost": len(lead_ids) - len(present),
        # stored more than once, or counted by the operators more often than the emulator holds them
        "doubled": sum(len(held[i]) - 1 for i in present) + max(0, reported - len(present)),
        "reported": reported,
        "resent": sum(n - 1 for n in on_the_wire.values()),  # accepted again (harmless: uploads are upserts)
        "rejected": sum(s["rejected"] for s in summaries),
        "tasks_per_worker": {w: deployment.received(w) - received[w] for w in WORKERS},
    }
    print(
        f"{setup}: {elapsed:.0f} s, {figures['requests']} upload requests, {figures['answers_429']} answered 429, "
        f"combined rate {figures['ratio']:.3f} of the key's ceiling, tasks per worker {figures['tasks_per_worker']}"
        f"; accepted/429 per window: {timeline(uploads)}"
    )
    return figures


def timeline(uploads: list[dict[str, Any]]) -> str:
    """Accepted and 429 answers in each window from the first request, e.g. ``60/0 58/3 ...``."""
    first = min(_epoch(e["ts"]) for e in uploads)
    windows: dict[int, Counter] = {}
    for e in uploads:
        windows.setdefault(int((_epoch(e["ts"]) - first) // dags.WINDOW_S), Counter())[e["status"]] += 1
    return " ".join(f"{windows[w][200]}/{windows[w][429]}" for w in range(max(windows) + 1) if w in windows)


def table(results: list[dict[str, Any]]) -> str:
    """The table of issue 15, from the measured figures."""
    lines = [
        "| setup | combined rate / key ceiling | 429s / requests | leads lost or doubled |",
        "|---|---|---|---|",
    ]
    for r in results:
        share = r["answers_429"] / r["requests"]
        answers = "0" if not r["answers_429"] else f"{share:.1%} ({r['answers_429']} / {r['requests']})"
        lines.append(f"| {LABELS[r['setup']]} | {r['ratio']:.2f} | {answers} | {r['lost'] + r['doubled']} |")
    return "\n".join(lines)


def test_four_uploads_on_one_key_for_each_limiter_setup(stack):
    lead_ids = write_leads(ROOT / "data")
    results = []
    for i, setup in enumerate(dags.SETUPS):
        if i:
            time.sleep(dags.WINDOW_S + 1.0)  # the previous setup's window drains on both sides
        results.append(run_setup(stack, setup, lead_ids))

    print(
        f"\n{dags.TASKS} upload tasks x {dags.LEADS_PER_TASK:,} leads on one key, batches of {dags.BATCH_SIZE}, limit "
        f"{dags.RATE} requests per {dags.WINDOW_S:g} s window (careCycle's 60 a minute, compressed), "
        f"CeleryExecutor with 2 workers, {datetime.now(timezone.utc):%Y-%m-%d}:\n"
    )
    print(table(results))
    print()
    for r in results:
        print(
            f"  {r['setup']}: operators reported {r['reported']:,} uploaded and {r['rejected']} rejected; "
            f"lost {r['lost']}, doubled {r['doubled']}; leads accepted again after a retry: {r['resent']}"
        )

    for r in results:
        setup = r["setup"]
        assert r["other_errors"] == 0, f"{setup}: upload answers other than 200 and 429"
        assert (r["lost"], r["doubled"], r["rejected"]) == (0, 0, 0), f"{setup}: leads lost, doubled or rejected"
        assert r["reported"] == len(lead_ids), f"{setup}: the operators' summaries do not add up"
        if setup in ("adaptive", "redis"):  # two hosts: both workers ran tasks
            assert all(r["tasks_per_worker"].values()), f"{setup}: one worker ran every task"
        least, most = GOALS[setup]
        if least is not None:
            assert r["ratio"] >= least, f"{setup}: combined rate {r['ratio']:.3f} of the ceiling, goal >= {least}"
        if most is not None:
            share = r["answers_429"] / r["requests"]
            assert share <= most, f"{setup}: {r['answers_429']} of {r['requests']} requests answered 429"
