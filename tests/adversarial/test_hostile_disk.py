"""No patient data left on local disk by a worker killed with ``kill -9`` (issue 20, item 8).

A real worker process uploads leads (with a checkpoint, a rejected file and a sync ledger) or exports customers
against the emulator, and is killed with SIGKILL at several moments: while it spools the leads, while it uploads,
late in the upload, while it pages an export. Then every file in the worker's temporary folder (``TMPDIR`` and
``SQLITE_TMPDIR`` point there) and in its output folders is scanned for the seeded names and phone numbers. What
the provider keeps while it works (the lead spool, the sync ledger's working copies, an export or rejected file
while it is written) has no name on disk, so the kernel reclaims it with the process; the files the user asked for
(the checkpoint, the ledger folder) hold no record contents.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: a name no seed or library holds: any file on disk containing it holds a lead's value
NAME = "Zebulonia"
#: enough leads that the spool outgrows SQLite's cache (8 MB) and its pages go to disk
LEADS = 60_000
BATCH = 20

UPLOAD = f"""
import sys
from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator
source, out = sys.argv[1], sys.argv[2]
CareCycleUploadLeadsOperator(
    task_id="upload", source_path=source, rejected_path=out + "/rejected.jsonl",
    checkpoint_path=out + "/checkpoint.json", sync_state_path=out + "/ledger", max_rejected_ratio=0.5,
    batch_size={BATCH}, max_in_flight=2, hook_params={{"requests_per_minute": 6000}},
).execute({{}})
"""

EXPORT = """
import sys
from airflow_provider_carecycle.operators.customers import CareCycleExtractCustomersOperator
out = sys.argv[1]
CareCycleExtractCustomersOperator(
    task_id="export", output_path=out + "/customers.csv", per_page=10, hook_params={"requests_per_minute": 6000},
).execute({})
"""


def leads(n: int) -> list[dict[str, Any]]:
    return [
        {
            "externalId": f"disk-{i}",
            "phoneNumber": "0000" if i % 97 == 96 else f"2025{i:06d}",  # a few rejected: the rejected file has rows
            "postalCode": "20001",
            "firstName": f"{NAME}{i}",
            "lastName": f"Quackenbush{i}",
            "email": f"{NAME.lower()}{i}@example.com",
        }
        for i in range(n)
    ]


def start(script: str, *args: str, tmp: Path) -> subprocess.Popen[bytes]:
    """A worker process running ``script``, with ``tmp`` as its only temporary folder."""
    tmp.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "TMPDIR": str(tmp),
        "SQLITE_TMPDIR": str(tmp),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    log = (tmp.parent / "worker.log").open("wb")
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env, cwd=ROOT, stdout=log, stderr=log)


def kill_when(child: subprocess.Popen[bytes], ready: Callable[[], bool], what: str) -> None:
    """SIGKILL ``child`` once ``ready()`` holds (it must still be running then)."""
    try:
        deadline = time.monotonic() + 240
        while not ready():
            assert child.poll() is None, f"the worker ended before {what} (exit code {child.returncode})"
            assert time.monotonic() < deadline, f"no {what} in time"
            time.sleep(0.01)
        assert child.poll() is None, f"the worker ended before it could be killed {what}"
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL


def spool_on_disk(pid: int, folder: Path, size: int = 4 << 20) -> bool:
    """Whether process ``pid`` has a file of ``folder`` open (named or not) that has grown past ``size`` bytes: the
    lead spool, once SQLite has written its pages out."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(folder)):
                if os.stat(f"/proc/{pid}/fd/{fd}").st_size > size:  # follows to the file, named or not
                    return True
        except OSError:
            continue
    return False


def files(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file())


def holding(pattern: re.Pattern[bytes], *folders: Path) -> dict[str, int]:
    """The files under ``folders`` whose bytes match ``pattern``, with how many matches (never the values)."""
    found = {}
    for path in files(*folders):
        hits = len(pattern.findall(path.read_bytes()))
        if hits:
            found[str(path)] = hits
    return found


def upload_requests(emu: Any) -> int:
    return sum(1 for e in emu.request_log() if e["path"] == "/v2/leads/upload" and e["status"] == 200)


#: what the scan looks for: the seeded names, e-mails and phone numbers (as written, or as +1 E.164)
LEAD_VALUES = re.compile(rb"Zebulonia\d+|zebulonia\d+@|Quackenbush\d+|2025\d{6}")

UPLOAD_MOMENTS: dict[str, Callable[[Any, subprocess.Popen[bytes], Path], bool]] = {
    # still reading the lead file, and the spool has outgrown SQLite's cache: its pages are on disk
    "spooling": lambda emu, child, tmp: upload_requests(emu) == 0 and spool_on_disk(child.pid, tmp),
    "uploading": lambda emu, child, tmp: upload_requests(emu) >= 10,
    "late": lambda emu, child, tmp: upload_requests(emu) >= 150,
}


@pytest.mark.slow
@pytest.mark.parametrize("moment", list(UPLOAD_MOMENTS))
def test_an_upload_killed_at_any_moment_leaves_no_lead_on_disk(carecycle_emulator, tmp_path, moment):
    carecycle_emulator.configure(latency_ms=30)  # an upload of ~200 batches takes seconds, so it can be killed
    source = tmp_path / "leads.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in leads(LEADS)))
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    child = start(UPLOAD, str(source), str(out), tmp=tmp)
    kill_when(child, lambda: UPLOAD_MOMENTS[moment](carecycle_emulator, child, tmp), moment)
    assert upload_requests(carecycle_emulator) < LEADS // BATCH, "the upload finished before the kill"

    if moment != "spooling":
        assert (out / "checkpoint.json").exists()  # a file the user asked for (it holds no record contents)
    assert holding(LEAD_VALUES, tmp, out) == {}
    assert not (out / "rejected.jsonl").exists()  # the rejected file was still being written: it has no name yet
    # no named working copy either: the spool, the ledger's working copies
    assert [p.name for p in files(tmp) if p.suffix == ".sqlite" or p.name.startswith("carecycle-leads")] == []


def test_the_scan_finds_lead_values_where_they_are(tmp_path):
    """The scan can fail: a finished upload's rejected file (which the user asked for) holds its leads' values."""
    source = tmp_path / "leads.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in leads(200)))
    from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator

    CareCycleUploadLeadsOperator(
        task_id="upload",
        source_path=str(source),
        rejected_path=str(tmp_path / "rejected.jsonl"),
        max_rejected_ratio=0.5,
        dry_run=True,
    ).execute({})
    assert list(holding(LEAD_VALUES, tmp_path)) == [str(tmp_path / "leads.jsonl"), str(tmp_path / "rejected.jsonl")]


@pytest.mark.slow
def test_an_export_killed_mid_run_leaves_no_customer_on_disk(carecycle_emulator, tmp_path):
    carecycle_emulator.reset(customers=400)
    carecycle_emulator.configure(latency_ms=100)
    customers = carecycle_emulator.query_customers({"includeTestNumbers": True})
    phones = {c["phoneNumber"][-10:] for c in customers if c.get("phoneNumber")}
    emails = {c["email"] for c in customers if c.get("email")}
    assert len(phones) > 300 and len(emails) > 300
    values = re.compile(b"|".join(re.escape(v.encode()) for v in sorted(phones | emails)))
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()

    def pages() -> int:
        return sum(1 for e in carecycle_emulator.request_log() if e["path"] == "/v2/customers" and e["status"] == 200)

    child = start(EXPORT, str(out), tmp=tmp)
    kill_when(child, lambda: pages() >= 8, "8 pages written")
    assert pages() < 40, "the export finished before the kill"

    assert holding(values, tmp, out) == {}
    assert [p.name for p in files(out)] == []  # no .partial file, no truncated export
