"""The retry wait docs/rate-limits-and-errors.md and docs/connections-carecloud.md describe: ``retry_backoff`` x 2^n
(about 1, 2, 4, 8 ... s by default), at most 30 s, times a random factor between 0.8 and 1.2 (+-20 % jitter)."""

from __future__ import annotations

import random

import pytest

from airflow_provider_carecycle.hooks._http import backoff_with_jitter


class _Edge(random.Random):
    """A random source that always answers one end of the range."""

    def __init__(self, high: bool) -> None:
        super().__init__()
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


@pytest.mark.parametrize(("attempt", "step"), [(1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 30), (9, 30)])
def test_the_wait_doubles_up_to_30_s_with_20_percent_jitter_either_way(attempt: int, step: float) -> None:
    assert backoff_with_jitter(attempt, 1.0, 30.0, _Edge(high=False)) == pytest.approx(step * 0.8)
    assert backoff_with_jitter(attempt, 1.0, 30.0, _Edge(high=True)) == pytest.approx(step * 1.2)
    waits = [backoff_with_jitter(attempt, 1.0, 30.0, random.Random(seed)) for seed in range(200)]
    assert step * 0.8 <= min(waits) < step * 0.9 and step * 1.1 < max(waits) <= step * 1.2
