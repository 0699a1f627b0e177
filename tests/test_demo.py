"""``make demo``: the demo runs the CRM lead feed in real Airflow, exits 0 and prints a PHI-free summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from carecycle_emulator.carecloud.seed import FIRST_NAMES, LAST_NAMES

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.airflow_dag
def test_demo_runs_the_crm_lead_feed_and_prints_the_summary(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dev.demo", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout[result.stdout.rindex("=" * 78, 0, result.stdout.rindex("=" * 78)) :]
    assert "CRM rows read:   60" in summary
    assert "Leads uploaded:  " in summary and "Rejected:        " in summary
    assert "country code is not +1" in summary and "crm_leads_" in summary
    assert "before upload: total=0" in summary and "after upload:  total=" in summary
    assert "Sensor: first results in:" in summary
    leaked = [name for name in (*FIRST_NAMES, *LAST_NAMES) if name in summary]
    assert not leaked, "the summary must hold no patient data"
    assert (tmp_path / "output" / "rejected").is_dir()


def test_demo_explains_a_missing_dag_file(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dev.demo", "--dag-file", str(tmp_path / "nope.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode != 0
    assert "Cannot find the example DAG" in result.stderr and "--dag-file" in result.stderr
