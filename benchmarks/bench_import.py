"""Import benchmark: what importing the provider's operators adds to a DAG file's parse (goal: at most 50 ms).

Run with ``python -m benchmarks.bench_import`` (or ``make bench``). Each sample is a fresh interpreter that times,
with ``time.perf_counter``, first the base imports of a DAG file (``import airflow.sdk`` on Airflow 3; the DAG and
BaseOperator modules on Airflow 2), then every operator, sensor, transfer and trigger module the provider declares.
The figure is the median over ``--runs`` samples (default 15) of the second part, so it is what the provider adds
over Airflow itself. One warm-up run first writes the bytecode caches (into a temporary ``PYTHONPYCACHEPREFIX``),
as a scheduler's DAG processor has them after its first parse.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import tempfile

GOAL_MS = 50.0

SAMPLE = """
import importlib, json, sys, time
started = time.perf_counter()
{base}
based = time.perf_counter()
for module in {modules!r}:
    importlib.import_module(module)
done = time.perf_counter()
heavy = [name for name in ("requests", "tenacity", "urllib3") if name in sys.modules]
print(json.dumps({{"base_ms": (based - started) * 1e3, "added_ms": (done - based) * 1e3, "heavy": heavy}}))
"""


def base_imports() -> str:
    """The imports every DAG file of the installed Airflow line starts with."""
    if int(importlib.metadata.version("apache-airflow").split(".")[0]) >= 3:
        return "import airflow.sdk"
    return "import airflow\nfrom airflow.models.dag import DAG\nfrom airflow.models.baseoperator import BaseOperator"


def provider_modules() -> list[str]:
    """Every operator, sensor, transfer and trigger module of the provider (from its provider info)."""
    from airflow_provider_carecycle.get_provider_info import get_provider_info

    info = get_provider_info()
    return [
        module
        for section in ("operators", "sensors", "triggers")
        for entry in info[section]
        for module in entry["python-modules"]
    ] + [entry["python-module"] for entry in info["transfers"]]


def sample(code: str, env: dict[str, str]) -> dict[str, float]:
    """One fresh interpreter's figures."""
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    if result.returncode:
        raise SystemExit(f"the import failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """Time the imports and print the added milliseconds and their ratio to the goal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters to take the median of")
    runs = parser.parse_args(argv).runs
    modules = provider_modules()
    env = {**os.environ, "PYTHONPYCACHEPREFIX": tempfile.mkdtemp(prefix="carecycle-bench-pyc-")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="carecycle-bench-home-"))
    code = SAMPLE.format(base=base_imports(), modules=modules)
    sample(code, env)  # warm-up: bytecode caches, Airflow's first-run config
    samples = [sample(code, env) for _ in range(runs)]
    base_ms = statistics.median(s["base_ms"] for s in samples)
    added_ms = statistics.median(s["added_ms"] for s in samples)
    spread = sorted(s["added_ms"] for s in samples)
    print(f"== import: {len(modules)} provider modules over `{base_imports().splitlines()[0]}`, median of {runs}")
    print(f"base imports: {base_ms:.0f} ms")
    print(
        f"provider modules add {added_ms:.1f} ms (min {spread[0]:.1f}, max {spread[-1]:.1f}) = "
        f"{added_ms / GOAL_MS:.2f} of the goal (goal <= {GOAL_MS:g} ms)"
    )
    print(f"heavy modules loaded by the end: {', '.join(samples[-1]['heavy']) or 'none'} (by Airflow or the provider)")


if __name__ == "__main__":
    main()
