"""What importing one module loads, seen from a fresh interpreter (this test process has long imported Airflow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import airflow_provider_carecycle

PACKAGE = Path(airflow_provider_carecycle.__file__).parent

#: what a pure module must not load: Airflow, an HTTP client, the file system layer, the storage layer
HEAVY = ("airflow", "requests", "fsspec", "airflow_provider_carecycle.storage", "airflow_provider_carecycle._compat")

_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
heavy = tuple(sys.argv[2:])
below = tuple(h + "." for h in heavy)
print("\\nLOADED", json.dumps(sorted(m for m in sys.modules if m in heavy or m.startswith(below))))
"""


def heavy_modules_loaded_by(module: str) -> list[str]:
    """The modules of :data:`HEAVY` (and their submodules) that importing ``module`` loads.

    :param module: a dotted module name.
    """
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, module, *HEAVY], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.rpartition("\nLOADED ")[2])  # Airflow may print on import


def modules_of(package: str) -> list[str]:
    """Every module of a subpackage of the provider, by dotted name (the package itself first).

    :param package: ``"leads"``, ``"sync"``.
    """
    folder = PACKAGE / package
    names = sorted(path.stem for path in folder.glob("*.py") if path.stem != "__init__")
    base = f"airflow_provider_carecycle.{package}"
    return [base, *(f"{base}.{name}" for name in names)]
