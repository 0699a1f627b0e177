"""Parse cost: a DAG file that imports the provider's operators must not pay for what only a running task needs.

Each check runs in a fresh interpreter: first the base imports of a DAG file (``import airflow.sdk`` on Airflow 3,
the DAG and BaseOperator modules on Airflow 2), then every operator, sensor, transfer and trigger module of the
provider. The heavy modules below must not be among those the provider's imports add. ``sqlite3`` and ``csv`` are
not on the list: they are in the standard library and Airflow's own base import already loads both, so importing
them costs a DAG file nothing. (Timings are in ``benchmarks/bench_import.py``, not here.)
"""

from __future__ import annotations

import json
import subprocess
import sys

from airflow_provider_carecycle._compat import AIRFLOW_V_3_0_PLUS
from benchmarks.bench_import import base_imports, provider_modules

#: Modules only a task that sends requests needs (``requests`` alone is about 170 ms of import), and the lead rules'
#: libraries, imported at the first lead (``phonenumbers`` and ``email_validator`` are about 100 ms each).
HEAVY = ("requests", "urllib3", "charset_normalizer", "tenacity", "phonenumbers", "email_validator")


def import_in_fresh_process(modules: list[str]) -> dict[str, list[str]]:
    """``{"base": heavy modules the base imports load, "added": heavy modules importing ``modules`` adds}``."""
    code = f"""
import importlib, json, sys
{base_imports()}
heavy = {HEAVY!r}
base = {{name for name in heavy if name in sys.modules}}
for module in {modules!r}:
    importlib.import_module(module)
added = sorted(name for name in heavy if name in sys.modules and name not in base)
print(json.dumps({{"base": sorted(base), "added": added}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_every_operator_module_loads_no_heavy_module():
    modules = provider_modules()
    assert len(modules) == 8
    found = import_in_fresh_process(modules)
    assert found["added"] == [], f"importing the provider's operators loads {found['added']} at DAG-parse time"
    if AIRFLOW_V_3_0_PLUS:  # so this test has teeth where it matters: airflow.sdk itself does not load requests
        assert "requests" not in found["base"]


def test_the_hooks_import_without_requests_too():
    """Operators expose the hooks' default connection ids and build hooks only at run time: the hook modules
    themselves are light."""
    found = import_in_fresh_process(
        ["airflow_provider_carecycle.hooks.carecycle", "airflow_provider_carecycle.carecloud.hook"]
    )
    assert found["added"] == []
