"""Source file reading benchmark: a large ``.json`` array element against the same data as JSON Lines.

Run with ``python -m benchmarks.bench_read`` (or ``make bench``). Writes to a temporary directory, reads each
file with :func:`airflow_provider_carecycle.storage.iter_records` and prints the time and its ratio to the goal.

1. **One large element**: a ``.json`` array holding a single ~50 MB record (a long list of notes) takes about as
   long as the same record as one JSON Lines line (goal: within 3x). The array reader used to re-decode the
   growing element on every 64 KB chunk, which is quadratic: about 30 s where JSON Lines takes well under 2 s.
2. **Many small elements**: 500,000 small records as a ``.json`` array against JSON Lines (goal: within 2x).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from airflow_provider_carecycle.storage import iter_records

BIG_NOTES = 50_000  # 50,000 notes of 1,000 characters: ~50 MB
SMALL = 500_000


def _timed_read(path: Path) -> tuple[int, float]:
    started = time.perf_counter()
    count = sum(1 for _ in iter_records(path))
    return count, time.perf_counter() - started


def _compare(label: str, records: list[dict[str, Any]], goal: float, folder: Path) -> bool:
    as_json, as_jsonl = folder / f"{label}.json", folder / f"{label}.jsonl"
    as_json.write_text(json.dumps(records))
    as_jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    (n_json, t_json), (n_jsonl, t_jsonl) = _timed_read(as_json), _timed_read(as_jsonl)
    ratio = t_json / max(t_jsonl, 1e-6)
    ok = n_json == n_jsonl == len(records) and ratio <= goal
    size_mb = as_json.stat().st_size / 1e6
    print(
        f"{label}: {size_mb:.0f} MB, .json {t_json:.2f} s, .jsonl {t_jsonl:.2f} s: "
        f"ratio {ratio:.2f} (goal <= {goal:g}) {'OK' if ok else 'MISSED'}"
    )
    return ok


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="carecycle-bench-read-") as tmp:
        folder = Path(tmp)
        big = [{"externalId": "big", "notes": ["x" * 1000 for _ in range(BIG_NOTES)]}]
        small = [{"externalId": str(i), "phoneNumber": "2125550142", "firstName": "Zelda"} for i in range(SMALL)]
        results = [_compare("one_large_element", big, 3.0, folder), _compare("many_small_elements", small, 2.0, folder)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
