"""The lead validator is pure: importing it loads neither Airflow nor an HTTP client.

Each check runs in a fresh interpreter, since this test process has long imported Airflow.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print("\\nLOADED", json.dumps(sorted(m for m in sys.modules if m in ("airflow", "requests")
                        or m.startswith(("airflow.", "requests.")))))
"""


def _heavy_modules_loaded_by(module: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, module], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.rpartition("\nLOADED ")[2])  # Airflow may print on import


@pytest.mark.parametrize("module", ["airflow_provider_carecycle.leads", "airflow_provider_carecycle.records"])
def test_importing_the_validator_loads_no_airflow_and_no_requests(module):
    assert _heavy_modules_loaded_by(module) == []


def test_the_probe_sees_airflow_when_it_is_loaded():
    """The check above can fail: the storage layer (object storage paths) does load Airflow."""
    assert "airflow" in _heavy_modules_loaded_by("airflow_provider_carecycle.storage")
