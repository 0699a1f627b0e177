"""Adaptive pacing (AIMD) for limiters that cannot see every client of a key, e.g. other hosts.

A host-wide limiter knows the requests of its own host only. When several hosts share a key and each is allowed
the key's whole limit (or a share that adds up to more), the server answers 429. Adaptive pacing then does what TCP
congestion control and botocore's ``adaptive`` retry mode do: **additive increase, multiplicative decrease**.

* Each limiter starts at its configured share ``C`` (``requests_per_minute``).
* A 429 cuts its allowance to ``BETA`` x what it was (at least 1 request per window). Further 429s within the
  API's ``retryAfter`` of a cut belong to the same congestion (requests already in flight) and cut nothing more.
* After every quiet window (``window_s`` seconds without a cut, counted from the end of the cut's ``retryAfter``,
  so the cut allowance is tried first) the allowance grows by ``INCREASE_RATIO`` x ``C`` (at least 1 request),
  back up to ``C``.
* While cut, the host-wide limiter also sends no bursts: requests start at most at the configured pace (one every
  ``window_s / C`` seconds). A burst into a window the other hosts already filled draws a 429 for every request in
  flight at once; paced requests meet it about one at a time.

Convergence: ``N`` hosts that each start at the key's full limit ``L`` send ``N x L``; every congestion round cuts
each host that saw a 429 by ``1 - BETA``, so after ``ceil(ln N / ln(1 / BETA))`` rounds (2 for N = 2, 4 for N = 4
with ``BETA = 0.7``), each about one ``retryAfter`` (about a window) long, the sum is at or below ``L``. From then
on the sum saws below ``L``: the hosts grow by ``N x INCREASE_RATIO x L`` a window together until a burst meets a
full window and the host that sent it cuts by ``1 - BETA``. The figures of the simulation test
(``tests/hooks/ratelimit/test_adaptive.py``) are in ``docs/rate-limits-and-errors.md``.

:class:`Aimd` is plain data, so the host-wide limiter can keep it in its shared state file and every process of a
host acts as one AIMD client.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: A 429 multiplies the allowance by this (botocore's adaptive mode uses 0.7 too).
BETA = 0.7
#: Each quiet window adds this share of the configured rate back.
INCREASE_RATIO = 0.05
#: No cut for this long (in windows) before the allowance grows again.
QUIET_WINDOWS = 1.0


@dataclass
class Aimd:
    """The adaptive allowance of one client: where it was cut to, when, and until when 429s are the same event.

    ``base`` is ``inf`` while the client was never cut (it may use its whole configured rate).
    """

    base: float = math.inf
    cut_at: float = -math.inf
    hold_until: float = -math.inf

    def allowed(self, ceiling: int, window_s: float, now: float) -> int:
        """Requests the client may start per window at ``now``: the cut value plus the additive recovery so far.

        :param ceiling: the configured rate (requests per window).
        :param window_s: the window in seconds (also the quiet period).
        :param now: the current time, on the clock ``cut_at`` was taken with.
        """
        if math.isinf(self.base):
            return ceiling
        quiet = max(1e-9, window_s * QUIET_WINDOWS)
        steps = max(0, math.floor((now - max(self.cut_at, self.hold_until)) / quiet))
        rate = self.base + steps * max(1.0, INCREASE_RATIO * ceiling)
        if rate >= ceiling:
            self.base, self.cut_at, self.hold_until = math.inf, -math.inf, -math.inf
            return ceiling
        return max(1, math.floor(rate))

    def cut(self, ceiling: int, window_s: float, now: float, retry_after: float | None) -> bool:
        """Take a 429 into account; return whether it cut the allowance (False: the same congestion as the last cut).

        :param ceiling: the configured rate (requests per window).
        :param window_s: the window in seconds.
        :param now: the current time.
        :param retry_after: the API's ``retryAfter`` in seconds, if any: 429s until then cut nothing more.
        """
        if now < self.hold_until:
            return False
        current = self.allowed(ceiling, window_s, now)
        self.base = max(1.0, current * BETA)
        self.cut_at = now
        self.hold_until = now + max(float(retry_after or 0.0), window_s / max(1, ceiling))
        return True
