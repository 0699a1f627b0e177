"""Peak RSS of the current process while a block runs: sampled every 10 ms from ``/proc/self/status`` (Linux).

Benchmark worker processes import it (they run from the repository root).
"""

from __future__ import annotations

import threading
from typing import Any


def rss_mb() -> float:
    """The current process's resident set size in MB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


class PeakRss:
    """``with PeakRss() as peak: ...``, then ``peak.before_mb`` and ``peak.peak_mb``."""

    def __init__(self, every_s: float = 0.01) -> None:
        self.every_s = every_s
        self.before_mb = self.peak_mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(self.every_s):
            self.peak_mb = max(self.peak_mb, rss_mb())

    def __enter__(self) -> PeakRss:
        self.before_mb = self.peak_mb = rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb())
