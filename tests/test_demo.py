"""``make demo``: the demo runs the CRM lead feed twice in real Airflow, exits 0 and prints a PHI-free summary;
the second run, after a few CRM customers changed, sends only those."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from carecycle_emulator.carecloud.seed import FIRST_NAMES, LAST_NAMES
from dev.demo import CHANGED, DELETED, TOUCHED, WITHDRAWN, second_run_figures

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.airflow_dag
def test_demo_runs_the_crm_lead_feed_twice_and_prints_the_summary(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dev.demo", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    first_box = result.stdout.index("careCycle demo: ")
    summary = result.stdout[first_box : result.stdout.index("=" * 78, first_box)]
    assert "CRM rows read:   60" in summary
    assert "Leads uploaded:  " in summary and "Rejected:        " in summary
    assert "region CZ is not allowed" in summary and "crm_leads_" in summary
    assert "before upload: total=0" in summary and "after upload:  total=" in summary
    assert "Sensor: first results in:" in summary
    assert (tmp_path / "output" / "rejected").is_dir()

    # the second run, from the structured figures: only the changed leads went out, in one request
    figures = json.loads((tmp_path / "summary.json").read_text())
    first, second = figures["first_run"], figures["second_run"]
    assert first["crm_rows"] == 60 and first["unchanged"] == 0 and first["uploaded"] > CHANGED + TOUCHED
    assert set(second.pop("states").values()) == {"success"}
    # from the watermark: the changed and touched customers, plus the few the overlap re-reads, not the 60 again
    assert CHANGED + TOUCHED <= second["crm_rows"] < 60
    resent = CHANGED + WITHDRAWN + DELETED  # the consent loop's two are sent again, with the flag
    assert second["upload_requests"] == 1 and second["leads_sent"] == second["uploaded"] == resent
    assert second["unchanged_sent"] == second["changed_not_sent"] == 0
    assert second["unchanged"] >= TOUCHED
    assert second["crm_rows"] == second["uploaded"] + second["unchanged"] + second["rejected"]
    assert second["ok"] is True
    second_box = result.stdout[result.stdout.rindex("Second run (") :]
    assert (
        f"Second run: {second['crm_rows']} CRM rows read since the watermark, {resent} changed -> {resent} "
        f"uploaded in 1 request(s), 0 unchanged sent; {second['unchanged']} unchanged not sent" in second_box
    )
    assert "Second run sent only what changed: yes" in second_box
    # the consent loop: careCycle holds the withdrawn and the deleted customer as do-not-call, the dialer left them
    # alone, and the "Do Not Call" heard on a call withdrew the consent in the CRM
    loop = figures["consent_loop"]
    assert loop["do_not_call_held"] == loop["do_not_contact_customers"] == WITHDRAWN + DELETED
    assert loop["calls_after_do_not_call"] == 0 and loop["heard_withdrawn_in_crm"] == loop["heard"] == 1
    assert loop["write_back"]["withdrawn"] >= 1 and loop["ok"] is True
    assert "Consent loop closed: yes" in second_box
    printed = summary + second_box + (tmp_path / "summary.json").read_text()
    leaked = [name for name in (*FIRST_NAMES, *LAST_NAMES) if name in printed]
    assert not leaked, "the summary must hold no patient data"


def test_demo_fails_a_second_run_that_sends_an_unchanged_lead():
    """The exit code follows these figures: any unchanged lead sent, or a changed one missing, is a failure."""
    changed, touched = ["c1", "c2", "c3"], ["t1", "t2"]

    def figures(sent: list[str], uploaded: int, unchanged: int) -> dict:
        upload = {"crm_rows": 6, "uploaded": uploaded, "unchanged": unchanged, "rejected": 0}
        requests = [{"batch": {"size": len(sent), "external_ids": sent}}]
        return second_run_figures(upload, requests, changed, touched)

    assert figures(["c1", "c2", "c3"], 3, 3)["ok"] is True
    resent = figures(["c1", "c2", "c3", "t1"], 4, 2)
    assert resent["ok"] is False and resent["unchanged_sent"] == 1
    missing = figures(["c1", "c2"], 2, 4)
    assert missing["ok"] is False and missing["changed_not_sent"] == 1
    assert figures(["c1", "c2", "c3"], 3, 0)["ok"] is False  # the touched customers were not even read


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
