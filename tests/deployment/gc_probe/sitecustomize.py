"""The triggerer figures' garbage-collection probe: records every full collection of the triggerer's processes.

``make test-triggerer`` (``tests/deployment/test_triggerer_figures.py``) puts this folder on the ``PYTHONPATH`` of
the deployment's processes when ``CARECYCLE_GC_PROBE_DIR`` is set, so Python imports it at start-up (``site``
imports ``sitecustomize``). In a process started as ``airflow triggerer`` (and the trigger runner it forks, which
inherits the callback) it adds one :data:`gc.callbacks` entry: each full (generation 2) collection appends one JSON
line to ``<CARECYCLE_GC_PROBE_DIR>/gc-<pid>.jsonl``: when it ended (epoch seconds) and how long it took. It touches
nothing else; the callback costs two clock reads per collection.

A full collection stops the trigger runner's event loop for as long as it takes to walk every tracked object of the
process (a few hundred thousand in an Airflow 3 trigger runner), and Airflow's watchdog reports that pause as "async
thread was blocked" like any blocking call. The test matches each such warning to the collections of the runner, so
a warning no collection explains (a blocking call) is told apart from one a collection explains.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time

_DIR = os.environ.get("CARECYCLE_GC_PROBE_DIR", "")


def _install() -> None:
    started = [0.0]

    def probe(phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = time.perf_counter() - started[0]
        with open(os.path.join(_DIR, f"gc-{os.getpid()}.jsonl"), "a") as out:
            out.write(json.dumps({"end": time.time(), "took": took}) + "\n")

    gc.callbacks.append(probe)


if _DIR and "triggerer" in sys.argv[1:2]:
    _install()
