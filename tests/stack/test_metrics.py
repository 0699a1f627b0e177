"""Metrics: the hooks' counters and the tasks' totals reach Airflow's ``Stats`` with the connection id as tag.

The end-to-end check (StatsD datagrams over UDP from ``dag.test()``) is ``tests/test_stack_in_airflow.py``; these
swap ``Stats`` for a recorder to check names, values and tags exactly.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_provider_carecycle import metrics
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
from airflow_provider_carecycle.operators.customers import CallsExport
from airflow_provider_carecycle.outcome import record_outcome


class Recorder:
    """Stands in for Airflow's ``Stats``: keeps every call."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str, float, dict]] = []
        self.fail = fail

    def incr(self, name, count=1, rate=1, *, tags=None):
        if self.fail:
            raise OSError("statsd is down")
        self.calls.append(("incr", name, count, tags))

    def timing(self, name, dt, *, tags=None):
        if self.fail:
            raise OSError("statsd is down")
        self.calls.append(("timing", name, dt, tags))

    def total(self, name: str) -> float:
        return sum(value for _, n, value, _ in self.calls if n == name)


@pytest.fixture
def stats(monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(metrics, "_stats", lambda: recorder)
    return recorder


def test_requests_retries_429s_and_waits_are_counted_per_connection(stats, carecycle_emulator):
    carecycle_emulator.configure(rate_limit=1, rate_window_s=1.0)  # the second request gets a 429, retryAfter=1
    hook = CareCycleHook("carecycle_default")
    campaign_id = carecycle_emulator.list_campaigns()[0]["id"]
    hook.get_campaign(campaign_id)
    hook.get_campaign(campaign_id)

    assert stats.total(metrics.API_REQUESTS) == hook.stats.requests == 3
    assert stats.total(metrics.API_RETRIES) == stats.total(metrics.API_RATE_LIMITED) == 1
    assert stats.total(metrics.API_WAIT) >= 1000.0  # milliseconds: the retryAfter of 1 s
    assert {tuple(sorted(tags.items())) for _, _, _, tags in stats.calls} == {(("conn_id", "carecycle_default"),)}


def test_upload_and_export_totals_are_sent_even_when_zero_and_a_dry_run_sends_none(stats, tmp_path):
    metrics.record_upload({"uploaded": 5, "rejected": 0, "duplicates": 2, "dry_run": False}, "cc")
    metrics.record_upload({"uploaded": 9, "rejected": 1, "duplicates": 0, "dry_run": True}, "cc")
    nothing = CallsExport(
        path=str(tmp_path / "calls.jsonl"),
        count=0,
        format="jsonl",
        pages=0,
        requests=0,
        rate_limited=0,
        elapsed_s=0.0,
        customers=0,
        missing_customers=0,
    )
    record_outcome(SimpleNamespace(carecycle_conn_id="cc", outlets=[]), {}, nothing)

    assert [(n, v) for _, n, v, _ in stats.calls] == [
        (metrics.LEADS_UPLOADED, 5),
        (metrics.LEADS_REJECTED, 0),
        (metrics.LEADS_DUPLICATES, 2),
        (metrics.LEADS_SUPPRESSED, 0),
        (metrics.CALLS_EXPORTED, 0),
    ]


def test_a_broken_metrics_backend_never_fails_a_request(monkeypatch, carecycle_emulator):
    monkeypatch.setattr(metrics, "_stats", lambda: Recorder(fail=True))
    hook = CareCycleHook("carecycle_default")
    assert hook.get_campaign(carecycle_emulator.list_campaigns()[0]["id"])["id"]


def test_every_documented_metric_is_in_the_docs():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    assert all(f"`{name}`" in page for name in metrics.ALL_METRICS)
