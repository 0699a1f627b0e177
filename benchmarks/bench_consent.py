"""The consent loop at 10,000 CRM customers with 3 % withdrawn consents (issue 22).

Run with ``python -m benchmarks.bench_consent``. Both emulators run in this process without a rate limit (the
figures are requests, not seconds); the operators run as a DAG task would (``execute``), with a sync ledger.

1. 150 customers (1.5 %) withdraw consent before the first feed: never sent, counted as ``suppressed``.
2. The first feed of the 10,000 customers.
3. 150 more (1.5 %) withdraw consent, 20 are deleted: the second feed sends exactly those again, with the flags.
4. 100 careCycle customers say "Do Not Call" on a call: the write-back withdraws their consent in the CRM
   (read-modify-write: three reads and one write each).
5. The third feed: the write-back's consent changes come back from the CRM (their flags careCycle already holds).

Printed: per step, the requests each API answered and the summary counts. The goals checked (exit 1 otherwise):
nothing withdrawn before the first feed is sent; every withdrawal after it is sent with ``doNotCall`` in at most
``ceil(n / 200)`` upload requests; every heard do-not-call is withdrawn in the CRM with no write to a customer
already withdrawn.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

CUSTOMERS = 10_000
WITHDRAWN_BEFORE = 150
WITHDRAWN_AFTER = 150
DELETED = 20
HEARD = 100
ANCHOR = datetime(2026, 3, 2, 0, 0, 0)
BATCH = 200


def _counts(emulator: Any, since: int) -> Counter[str]:
    """Requests an emulator answered after its ``since``-th, by method and path family."""
    out: Counter[str] = Counter()
    for entry in emulator.request_log()[since:]:
        path = entry["path"]
        family = path.rsplit("/", 1)[0] + "/{id}" if path.count("/") > 4 and "customers/" in path else path
        out[f"{entry['method']} {family.split('/v1.0')[-1]}"] += 1
    return out


def main() -> int:
    from carecycle_emulator import CareCloudEmulator, CareCycleEmulator

    workdir = Path(tempfile.mkdtemp(prefix="bench-consent-"))
    carecycle = CareCycleEmulator(api_keys=("cc_bench_key",), rate_limit=0, customers=0, campaigns=1, seed=0).start()
    carecloud = CareCloudEmulator(customers=CUSTOMERS, seed=0, anchor=ANCHOR, days=1, rate_limit=0).start()
    os.environ["AIRFLOW_CONN_CARECYCLE_DEFAULT"] = carecycle.airflow_connection(requests_per_minute=100_000)
    os.environ["AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT"] = carecloud.airflow_connection(requests_per_minute=100_000)
    from airflow_provider_carecycle.transfers.carecloud import CareCloudCrmToCareCycleLeadsOperator
    from airflow_provider_carecycle.transfers.carecloud_consent import CareCycleDoNotCallToCareCloudOperator

    since = (ANCHOR - timedelta(days=2)).replace(tzinfo=timezone.utc)
    failures: list[str] = []
    report: dict[str, Any] = {}

    def feed(step: str, before: datetime) -> dict[str, Any]:
        marks = len(carecycle.request_log()), len(carecloud.request_log())
        started = time.monotonic()
        result = CareCloudCrmToCareCycleLeadsOperator(
            task_id="crm_to_leads",
            changed_since=since,
            changed_before=before.replace(tzinfo=timezone.utc),
            sync_state_path=str(workdir / "ledger"),
            max_rejected_ratio=1.0,
            defaults={"timezone": "America/New_York"},
        ).execute({})
        report[step] = {
            "summary": {k: v for k, v in result.items() if k not in ("top_reasons", "rejected_path")},
            "carecycle_requests": dict(_counts(carecycle, marks[0])),
            "carecloud_requests": dict(_counts(carecloud, marks[1])),
            "seconds": round(time.monotonic() - started, 1),
        }
        return result

    try:
        customers = carecloud.customers()
        valid = [
            c["customer_id"]
            for c in customers
            if c["state"] == 1 and c["personal_information"]["phone"].startswith("1")
        ]
        before_ids = valid[:WITHDRAWN_BEFORE]
        after_ids = valid[WITHDRAWN_BEFORE : WITHDRAWN_BEFORE + WITHDRAWN_AFTER]
        deleted_ids = valid[WITHDRAWN_BEFORE + WITHDRAWN_AFTER : WITHDRAWN_BEFORE + WITHDRAWN_AFTER + DELETED]
        first_end = ANCHOR + timedelta(seconds=1)
        for customer_id in before_ids:
            carecloud.set_consent(customer_id, "marketing_communication", 0, when=ANCHOR - timedelta(hours=1))
        first = feed("1_first_feed", first_end)
        held = carecycle.get_customers_by_external_id()
        if first["suppressed"] != WITHDRAWN_BEFORE or any(i in held for i in before_ids):
            failures.append("a customer withdrawn before the first feed was sent (or not counted as suppressed)")

        changed_at = ANCHOR + timedelta(hours=1)
        for customer_id in after_ids:
            carecloud.set_consent(customer_id, "marketing_communication", 0, when=changed_at)
        for customer_id in deleted_ids:
            carecloud.set_state(customer_id, 0, when=changed_at)
        second = feed("2_second_feed", ANCHOR + timedelta(hours=2))
        held = carecycle.get_customers_by_external_id()
        flagged = sum(held[i][0]["doNotCall"] is True for i in (*after_ids, *deleted_ids))
        resent = WITHDRAWN_AFTER + DELETED
        uploads = report["2_second_feed"]["carecycle_requests"].get("POST /v2/leads/upload", 0)
        report["2_second_feed"]["sent_with_do_not_call"] = flagged
        if second["uploaded"] != resent or flagged != resent or uploads > math.ceil(resent / BATCH):
            failures.append(f"the second feed sent {second['uploaded']} ({flagged} flagged) in {uploads} requests")

        callable_ids = [i for i in valid if i in held and i not in (*after_ids, *deleted_ids)][:HEARD]
        for customer_id in callable_ids:
            carecycle.record_call(held[customer_id][0]["id"], "Do Not Call")
        marks = len(carecycle.request_log()), len(carecloud.request_log())
        started = time.monotonic()
        write_back = CareCycleDoNotCallToCareCloudOperator(
            task_id="do_not_call_to_crm", state_path=str(workdir / "write-back.json")
        ).execute({})
        report["3_write_back"] = {
            "summary": write_back,
            "carecycle_requests": dict(_counts(carecycle, marks[0])),
            "carecloud_requests": dict(_counts(carecloud, marks[1])),
            "seconds": round(time.monotonic() - started, 1),
        }
        if write_back["withdrawn"] != HEARD or write_back["failed"]:
            failures.append(f"the write-back withdrew {write_back['withdrawn']} of {HEARD}")
        if report["3_write_back"]["carecloud_requests"].get("PUT /customers/{id}", 0) != HEARD:
            failures.append("the write-back wrote a customer whose consent was already withdrawn")

        third = feed("4_third_feed", datetime.now() + timedelta(days=1))  # the write-back's changes are stamped now
        if third["uploaded"] != HEARD:
            failures.append(f"the third feed sent {third['uploaded']} of the {HEARD} consents the write-back changed")
    finally:
        carecycle.stop()
        carecloud.stop()

    print(json.dumps(report, indent=2, sort_keys=True, default=str))
    first_s, second_s = report["1_first_feed"]["summary"], report.get("2_second_feed", {}).get("summary", {})
    wb = report.get("3_write_back", {}).get("summary", {})
    third_s = report.get("4_third_feed", {}).get("summary", {})
    withdrawn = WITHDRAWN_BEFORE + WITHDRAWN_AFTER
    print(
        f"\n{CUSTOMERS} CRM customers, {withdrawn} ({withdrawn / CUSTOMERS:.0%}) withdrawn, {DELETED} deleted:\n"
        f"  first feed:  {first_s.get('uploaded')} uploaded, {first_s.get('suppressed')} suppressed, "
        f"{first_s.get('rejected')} rejected\n"
        f"  second feed: {second_s.get('uploaded')} sent again with doNotCall, {second_s.get('unchanged')} unchanged\n"
        f"  write-back:  {wb.get('withdrawn')} withdrawn in the CRM of {wb.get('candidates')} candidates\n"
        f"  third feed:  {third_s.get('uploaded')} sent again (consents the write-back withdrew)\n"
        + ("OK" if not failures else "FAILED: " + "; ".join(failures))
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
