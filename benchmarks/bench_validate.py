"""Lead validation benchmark: leads validated per second, and the phone check before and after issue 23 side by side.

Run with ``python -m benchmarks.bench_validate`` (or ``make bench``); ``python -m benchmarks.bench_validate 200000``
sets the number of leads (default 1,000,000, the size of ``bench_sync``'s large run). Everything runs in this one
process, one measurement after the other, on the same leads:

1. **Whole validation**: leads validated per second by :class:`~airflow_provider_carecycle.leads.LeadValidator`
   (phone, ZIP, e-mail, date of birth, names), each lead a distinct number written one of five ways.
2. **The phone check alone**, side by side: the hand-written NANP pattern the provider used before (kept below as
   :func:`legacy_phone`, for this comparison only) and the ``phonenumbers`` check (:func:`normalize_phone`) on the
   same written numbers, every one distinct (a cold cache: each number is parsed), and then the same numbers again
   (a warm cache: a feed that sends yesterday's numbers written the same way).

The goal: the new phone check, on distinct numbers, costs at most 25 % of the 1,000,000-lead sync run's time, whose
own goal is 90 s (``bench_sync``): at most 22.5 s of CPU for 1,000,000 numbers. Figures are CPU seconds of this
process (on a shared machine, what the work would take on its own), with the wall time beside them.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from airflow_provider_carecycle.leads import LeadValidator, normalize_phone
from airflow_provider_carecycle.leads import phone as phone_module
from carecycle_emulator.phones import DISTINCT_PHONES, us_phone

LEADS = 1_000_000
SYNC_RUN_GOAL_S = 90.0  # bench_sync's goal for its 1,000,000-lead run
PHONE_SHARE_GOAL = 0.25
CHUNK = 10_000

_FORMS: tuple[Callable[[str], str], ...] = (
    lambda d: d,
    lambda d: f"({d[:3]}) {d[3:6]}-{d[6:]}",
    lambda d: f"{d[:3]}-{d[3:6]}-{d[6:]}",
    lambda d: f"+1 {d[:3]} {d[3:6]} {d[6:]}",
    lambda d: f"1.{d[:3]}.{d[3:6]}.{d[6:]}",
)


def written_phone(i: int) -> str:
    """The ``i``-th distinct number, written one of five common ways."""
    return _FORMS[i % len(_FORMS)](us_phone(i))


def lead(i: int) -> dict[str, Any]:
    """A CRM-style lead with every field the new checks read."""
    return {
        "externalId": f"v-{i}",
        "phoneNumber": written_phone(i),
        "postalCode": f"{10001 + i % 80000:05d}",
        "email": f"first{i}.last@example{i % 97}.com",
        "dateOfBirth": f"{1 + i % 12:02d}-{1 + i % 28:02d}-{1940 + i % 40}",
        "firstName": f"First{i}",
        "lastName": "Bench",
    }


# -- the phone check before issue 23, for the comparison only --------------------------------------------------

_LEGACY_CHARS = re.compile(r"^\+?[\d\s().\-]+$")


def legacy_phone(text: str) -> str:
    """The hand-written NANP check the provider used before issue 23 (valid results only; errors raise)."""
    text = text.strip()
    if not _LEGACY_CHARS.match(text):
        raise ValueError("characters")
    digits = re.sub(r"\D", "", text)
    if text.startswith("+") and not digits.startswith("1"):
        raise ValueError("country code")
    if len(digits) == 11 and digits.startswith("1"):
        national = digits[1:]
    elif len(digits) == 10 and not text.startswith("+"):
        national = digits
    else:
        raise ValueError("length")
    if national[0] in "01" or national[3] in "01":
        raise ValueError("area code or exchange")
    return "+1" + national


def _timed(work: Callable[[], int]) -> tuple[int, float, float]:
    """``work()``'s count, CPU seconds and wall seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = work()
    return count, time.process_time() - cpu, time.perf_counter() - wall


def _validate_all(n: int) -> tuple[int, float, float]:
    """Validate ``n`` leads, made in chunks outside the timing (memory stays flat): valid count, CPU s, wall s."""
    validator = LeadValidator()
    valid, cpu, wall = 0, 0.0, 0.0
    for start in range(0, n, CHUNK):
        records = [lead(i) for i in range(start, min(start + CHUNK, n))]
        count, chunk_cpu, chunk_wall = _timed(lambda chunk=records: sum(validator.validate(r).ok for r in chunk))
        valid, cpu, wall = valid + count, cpu + chunk_cpu, wall + chunk_wall
    return valid, cpu, wall


def _each(check: Callable[[str], str], phones: Iterable[str]) -> int:
    count = 0
    for phone in phones:
        check(phone)
        count += 1
    return count


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else LEADS
    if n > DISTINCT_PHONES:
        raise SystemExit(f"at most {DISTINCT_PHONES:,} leads (distinct numbers)")
    print(f"== lead validation: {n:,} leads, each a distinct number written one of {len(_FORMS)} ways")
    phones = [written_phone(i) for i in range(n)]
    assert legacy_phone(phones[1]) == normalize_phone(phones[1])  # the same answer for a valid US number

    valid, cpu, wall = _validate_all(n)
    if valid != n:
        print(f"MISSED: only {valid:,} of {n:,} leads are valid")
        return 1
    print(f"whole validation (new checks): {n / cpu:,.0f} leads/s ({cpu:.1f} s CPU, {wall:.1f} s wall)")

    _, old_cpu, old_wall = _timed(lambda: _each(legacy_phone, phones))
    phone_module._cached_parse.cache_clear()
    _, new_cpu, new_wall = _timed(lambda: _each(normalize_phone, phones))
    tail = phones[-min(n, 60_000) :]  # what the cache holds (65,536 written forms)
    _, warm_cpu, _ = _timed(lambda: _each(normalize_phone, tail))
    print(
        f"phone check, old (pattern): {n / old_cpu:,.0f} numbers/s ({old_cpu:.1f} s CPU, {old_wall:.1f} s wall)\n"
        f"phone check, new (phonenumbers, cold cache): {n / new_cpu:,.0f} numbers/s ({new_cpu:.1f} s CPU, "
        f"{new_wall:.1f} s wall): {new_cpu / old_cpu:.1f}x the old check's time\n"
        f"phone check, new (warm cache, the same {len(tail):,} numbers again): {len(tail) / warm_cpu:,.0f} numbers/s"
    )
    per_million = new_cpu * 1_000_000 / n
    budget = PHONE_SHARE_GOAL * SYNC_RUN_GOAL_S
    share = per_million / SYNC_RUN_GOAL_S
    ok = per_million <= budget
    print(
        f"new phone check for 1,000,000 leads: {per_million:.1f} s CPU = {share:.0%} of the 1M sync run's "
        f"{SYNC_RUN_GOAL_S:.0f} s (goal <= {PHONE_SHARE_GOAL:.0%}, {budget:.1f} s: {budget / per_million:.2f}x goal) "
        f"{'OK' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
