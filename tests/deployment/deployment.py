"""A real Airflow deployment in a throwaway ``AIRFLOW_HOME``: its environment, its processes and its REST API.

Used by the deployment test of every supported line (``test_real_deployment.py``) and the CeleryExecutor test
(``tests/distributed``). Imports neither Airflow nor the provider: the processes are the ``airflow`` command of the
interpreter running the test (its venv), started with the environment :func:`airflow_env` builds.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import requests

#: the Airflow of this venv, as a tuple: ``(3, 1, 8)``
AIRFLOW_VERSION = tuple(int(part) for part in version("apache-airflow").split(".")[:3])
AIRFLOW_3 = AIRFLOW_VERSION >= (3,)
#: upper bounds of the waits (seconds)
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dag_bundle_config(folder: Path) -> str:
    """``[dag_processor] dag_bundle_config_list`` making ``folder`` the only DAG bundle (Airflow 3)."""
    from dev.dag_loader import dag_bundle_config as config

    return config(folder)


def airflow_env(
    home: Path, api_port: int, dags: Path, connections: Mapping[str, str], *, pythonpath: str | None = None
) -> dict[str, str]:
    """The environment of every Airflow process: this process's, without its own Airflow settings, plus the
    deployment's.

    :param home: the throwaway ``AIRFLOW_HOME``.
    :param api_port: the API server's port.
    :param dags: the DAG bundle's folder.
    :param connections: ``AIRFLOW_CONN_*`` name -> value.
    :param pythonpath: ``PYTHONPATH`` of the processes (default: none, whatever this process has).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__", "PYTHONPATH"))}
    api_url = f"http://127.0.0.1:{api_port}"
    env.update(connections)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    env.update(
        {
            # the executor starts tasks as `airflow ...` from the PATH: the same installation as this test's
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",  # the REST and CLI connection tests
            # only runs triggered through the API: the daily schedule must not add a run of its own
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if AIRFLOW_3:
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": dag_bundle_config(dags),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
                "AIRFLOW__API__BASE_URL": api_url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(api_port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            }
        )
    else:  # Airflow 2 accepts SQLite with the SequentialExecutor only; its REST API takes basic auth
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor",
                "AIRFLOW__API__AUTH_BACKENDS": "airflow.api.auth.backend.basic_auth",
                "AIRFLOW__WEBSERVER__BASE_URL": api_url,
                "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": "127.0.0.1",
                "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(api_port),
                "AIRFLOW__WEBSERVER__WORKERS": "1",
                "AIRFLOW__WEBSERVER__SECRET_KEY": secrets.token_hex(16),
            }
        )
    return env


class Deployment:
    """The Airflow processes of one test, and the API server's REST client.

    Every process runs in ``home`` (its working directory), in a process group of its own, its output in
    ``<home>/<name>.out``.

    :param home: the throwaway ``AIRFLOW_HOME``.
    :param env: the processes' environment.
    :param api_port: the API server's port.
    """

    def __init__(self, home: Path, env: dict[str, str], api_port: int) -> None:
        self.home = home
        self.env = env
        self.root = f"http://127.0.0.1:{api_port}"
        self.api = f"{self.root}/api/{'v2' if AIRFLOW_3 else 'v1'}"
        self.airflow = str(Path(sys.executable).with_name("airflow"))
        self.processes: dict[str, subprocess.Popen] = {}
        self.session = requests.Session()

    def run(self, *args: str, timeout: float = START_TIMEOUT_S) -> str:
        """Run one ``airflow`` CLI command to its end; return what it printed."""
        done = subprocess.run(
            [self.airflow, *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        with open(self.home / "cli.out", "a") as out:  # scanned with the processes' output
            out.write(f"$ airflow {' '.join(args)}\n{done.stdout}{done.stderr}")
        assert done.returncode == 0, f"airflow {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def start(self, name: str, *args: str) -> None:
        """Start ``airflow <args>`` in its own process group, its output in ``<home>/<name>.out``."""
        out = open(self.home / f"{name}.out", "wb")
        self.processes[name] = subprocess.Popen(
            [self.airflow, *args],
            env=self.env,
            cwd=self.home,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()

    def output(self, name: str) -> str:
        return (self.home / f"{name}.out").read_text(errors="replace")

    def dead(self) -> dict[str, int]:
        """``name -> exit code`` of every process that has exited."""
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def check_alive(self) -> None:
        for name, code in self.dead().items():
            raise AssertionError(f"airflow {name} exited ({code}):\n{self.output(name)[-4000:]}")

    def stop(self) -> None:
        """SIGTERM every process group, then SIGKILL what is left after ``STOP_TIMEOUT_S``."""
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # the group's children too, whether or not it exited
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A REST API call, sent again (up to 3 times) when SQLite was locked: with one writer at a time, Airflow 3's
        API server answers 500 "Database error" when another process held the database longer than its timeout."""
        for attempt in range(4):
            response = self.session.request(method, f"{self.api}{path}", timeout=30, **kwargs)
            if response.status_code != 500 or "Database error" not in response.text or attempt == 3:
                return response
            time.sleep(1 + attempt)
        raise AssertionError("unreachable")

    def get(self, path: str, **params: Any) -> Any:
        response = self.request("GET", path, params=params)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:500]}"
        return response.json()

    def send(self, method: str, path: str, body: Mapping[str, Any]) -> Any:
        response = self.request(method, path, json=body)
        assert response.status_code in (200, 201), f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response.json()


def wait_for(what: str, check: Callable[[], Any], deployment: Deployment, timeout: float, every: float = 0.5) -> Any:
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds or when a process died."""
    deadline = time.monotonic() + timeout
    while True:
        deployment.check_alive()
        with contextlib.suppress(requests.RequestException):
            result = check()
            if result:
                return result
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}.")
        time.sleep(every)


def task_log_tail(home: Path, task_id: str, lines: int = 40, run_id: str = "*") -> str:
    """The last lines of every log file of ``task_id`` (PHI-free: the provider logs counts and ids only)."""
    tails = []
    for log_file in sorted((home / "logs").glob(f"dag_id=*/run_id={run_id}/task_id={task_id}/*")):
        text = log_file.read_text(errors="replace").splitlines()[-lines:]
        tails.append(f"\n--- {log_file.name}\n" + "\n".join(text))
    return "".join(tails)


def wait_for_dag_run(deployment: Deployment, run_path: str, what: str, timeout: float) -> dict[str, Any]:
    """Poll the DAG run at ``run_path`` (REST API) until it ends: ``{"state": ..., "tis": [...]}``.

    Fails at once, with each stuck task's log tail, when a task failed or is up for retry.
    """

    def finished() -> dict[str, Any] | None:
        tis = deployment.get(f"{run_path}/taskInstances")["task_instances"]
        stuck = [ti for ti in tis if ti["state"] in ("failed", "up_for_retry", "upstream_failed")]
        assert not stuck, f"{what}: tasks did not succeed: {[(ti['task_id'], ti['state']) for ti in stuck]}" + "".join(
            task_log_tail(deployment.home, ti["task_id"], run_id=ti["dag_run_id"]) for ti in stuck
        )
        state = deployment.get(run_path)["state"]
        return {"state": state, "tis": tis} if state in ("success", "failed") else None

    return wait_for(what, finished, deployment, timeout, every=1.0)
