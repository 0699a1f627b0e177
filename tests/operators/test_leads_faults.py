"""Lead upload under injected faults, 429s and a SIGKILLed worker: nothing lost, nothing acknowledged twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator
from carecycle_emulator.phones import us_phone

pytestmark = pytest.mark.slow


def leads(n: int, bad_every: int = 0) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        phone = "0000" if bad_every and i % bad_every == bad_every - 1 else us_phone(i)
        out.append({"externalId": f"lead-{i}", "phoneNumber": phone, "postalCode": "33101", "firstName": f"N{i}"})
    return out


def acknowledged_fingerprints(emu: Any) -> Counter[str]:
    return Counter(
        e["batch"]["fingerprint"] for e in emu.request_log() if e["path"] == "/v2/leads/upload" and e["status"] == 200
    )


def test_ten_thousand_leads_through_faults_and_429s(carecycle_emulator, tmp_path):
    # the API allows 10 requests/s; the client believes 20, so 429s happen; 20% of requests fail (503/500/drop)
    carecycle_emulator.configure(rate_limit=10, rate_window_s=1.0, fault_rate=0.2, fault_kinds=("503", "500", "drop"))
    records = leads(10_000, bad_every=250)  # 40 invalid phones
    op = CareCycleUploadLeadsOperator(
        task_id="upload",
        records=records,
        rejected_path=str(tmp_path / "rejected.jsonl"),
        max_rejected_ratio=0.01,
        batch_size=100,
        max_in_flight=4,
        hook_params={"requests_per_minute": 20, "rate_limit_window": 1.0, "retry_backoff": 0.01, "max_retries": 40},
    )

    result = op.execute({})

    counts = carecycle_emulator.counts()
    assert counts["rate_limited"] > 0 and counts["faults"] > 0  # the faults really happened
    assert (result["uploaded"], result["rejected"]) == (9_960, 40)
    assert result["uploaded"] + result["rejected"] == result["total"] == 10_000
    stored = carecycle_emulator.get_customers_by_external_id()
    valid_ids = {r["externalId"] for i, r in enumerate(records) if i % 250 != 249}
    assert all(len(stored[external_id]) == 1 for external_id in valid_ids)
    assert not ({r["externalId"] for r in records} - valid_ids) & set(stored)
    acked = acknowledged_fingerprints(carecycle_emulator)
    assert sum(acked.values()) == 100 and max(acked.values()) == 1
    assert len((tmp_path / "rejected.jsonl").read_text().splitlines()) == 40


CHILD = """
import sys
from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator
CareCycleUploadLeadsOperator(
    task_id="upload", source_path=sys.argv[1], checkpoint_path=sys.argv[2], batch_size=50, max_in_flight=2,
    hook_params={"requests_per_minute": 10, "rate_limit_window": 1.0},
).execute({})
"""


def test_a_sigkilled_upload_resumes_without_resending_acknowledged_batches(carecycle_emulator, tmp_path):
    source = tmp_path / "leads.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in leads(3_000)))
    checkpoint = tmp_path / "checkpoint" / "upload.json"
    env = {**os.environ, "AIRFLOW_CONN_CARECYCLE_DEFAULT": os.environ["AIRFLOW_CONN_CARECYCLE_DEFAULT"]}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(source), str(checkpoint)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # The client sends 10 requests, then waits out its rate window. Kill it in such a pause, once at least
        # two bursts are acknowledged and checkpointed (a batch answered but not yet checkpointed when the worker
        # dies is the one case an at-least-once client re-sends; the upsert by externalId makes it harmless).
        deadline = time.monotonic() + 60
        while True:
            assert child.poll() is None, "the upload finished before it could be killed"
            assert time.monotonic() < deadline, "the upload made no progress"
            log = [e for e in carecycle_emulator.request_log() if e["path"] == "/v2/leads/upload"]
            acked = sum(1 for e in log if e["status"] == 200)
            idle = log and time.time() - _ts(log[-1]["ts"]) > 0.25
            if acked >= 20 and idle and _checkpointed(checkpoint) == acked:
                break
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    first_run = sum(acknowledged_fingerprints(carecycle_emulator).values())
    assert 20 <= first_run < 60

    result = CareCycleUploadLeadsOperator(
        task_id="upload",
        source_path=str(source),
        checkpoint_path=str(checkpoint),
        batch_size=50,
        max_in_flight=2,
        hook_params={"requests_per_minute": 60, "rate_limit_window": 1.0},
    ).execute({})

    assert result["skipped_batches"] == first_run
    assert (result["uploaded"], result["batches"], result["rejected"]) == (3_000, 60, 0)
    acked = acknowledged_fingerprints(carecycle_emulator)
    assert sum(acked.values()) == 60 and max(acked.values()) == 1
    stored = carecycle_emulator.get_customers_by_external_id()
    assert all(len(stored[f"lead-{i}"]) == 1 for i in range(3_000))


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _checkpointed(path: Path) -> int:
    try:
        return len(json.loads(path.read_text())["done"])
    except (OSError, ValueError, KeyError):
        return -1
