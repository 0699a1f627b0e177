"""``make test-distributed`` only: this folder is skipped by every other pytest run (``make test`` included).

The test starts Postgres, Redis and a whole CeleryExecutor deployment, in a venv of its own
(``.venv-distributed``); ``make test-distributed`` runs it with ``CARECYCLE_TEST_DISTRIBUTED=1`` and
``--confcutdir=tests/distributed`` (so ``tests/conftest.py`` and its throwaway SQLite home stay out of it).

Everything the run writes lives in one temporary folder, :data:`ROOT`, created here before Airflow is first
imported (its ``AIRFLOW_HOME`` for this process is in it, and ``TMPDIR`` for every process it starts) and removed
when the run ends.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

ENABLED = os.environ.get("CARECYCLE_TEST_DISTRIBUTED") == "1"

if ENABLED:
    ROOT = Path(tempfile.mkdtemp(prefix="carecycle-distributed-"))
    atexit.register(shutil.rmtree, ROOT, ignore_errors=True)
    (ROOT / "pytest-home").mkdir()
    (ROOT / "tmp").mkdir()
    os.environ["AIRFLOW_HOME"] = str(ROOT / "pytest-home")
    # every temporary file of this process and of those it starts (Airflow's, the tasks') lands in ROOT too
    os.environ["TMPDIR"] = tempfile.tempdir = str(ROOT / "tmp")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    collect_ignore_glob: list[str] = []
else:
    collect_ignore_glob = ["*"]
