from __future__ import annotations

import logging

from airflow_provider_carecycle.progress import Progress


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_logs_at_most_every_interval_with_rate_and_eta(caplog):
    clock = Clock()
    log = logging.getLogger("progress-test")
    caplog.set_level(logging.INFO, logger="progress-test")
    progress = Progress(log, "records", total=1000, every_s=10, clock=clock)
    clock.now = 5.0
    progress.add(100)
    assert caplog.messages == []
    clock.now = 30.0
    progress.add(400)
    assert caplog.messages == ["500 of 1,000 records (50%), 1,000/min, ETA 0.5 min"]
    clock.now = 31.0
    progress.add(500)
    assert len(caplog.messages) == 1
    assert progress.line() == "1,000 of 1,000 records (100%), 1,935/min"


def test_unknown_total():
    clock = Clock()
    progress = Progress(logging.getLogger("x"), "customers", clock=clock)
    clock.now = 60.0
    progress.add(120)
    assert progress.line() == "120 customers, 120/min"
