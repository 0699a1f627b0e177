"""``python -m benchmarks`` (``make bench``): run every benchmark, each in its own process, and report failures.

Pass names to run a subset: ``python -m benchmarks hook upload``.
"""

from __future__ import annotations

import subprocess
import sys
import time

BENCHMARKS = (
    "hook",
    "upload",
    "extract",
    "campaign_stats",
    "triggerer",
    "read",
    "sync",
    "validate",
    "consent",
    "import",
)


def main(argv: list[str]) -> int:
    """Run the named benchmarks (default: all); return the number that failed."""
    names = argv or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"\n===== bench_{name} =====", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, "-m", f"benchmarks.bench_{name}"])
        print(f"===== bench_{name}: exit {code} in {time.monotonic() - started:.0f} s =====", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return len(failed)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
