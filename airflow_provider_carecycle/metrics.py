"""The provider's metrics, sent through Airflow's own ``Stats`` (StatsD or OpenTelemetry, per ``[metrics]``).

Names (all counters but the timer):

* ``carecycle.api.requests``, ``carecycle.api.retries``, ``carecycle.api.rate_limited``: every request attempt,
  every retry, every 429 answer, of the careCycle and CareCloud CRM hooks;
* ``carecycle.api.wait`` (timer, milliseconds): each time the client-side limiter or a ``retryAfter``/backoff made
  a task wait;
* ``carecycle.leads.uploaded``, ``carecycle.leads.rejected``, ``carecycle.leads.duplicates``,
  ``carecycle.leads.suppressed`` (not sent: may not be called and never held by careCycle): per finished upload;
* ``carecycle.customers.exported``, ``carecycle.calls.exported``: rows written by the exports.

Each is tagged ``conn_id=<Airflow connection id>`` (StatsD sends tags only with ``statsd_datadog_enabled`` or
``statsd_influxdb_enabled``; OpenTelemetry always). Only counts and connection ids go out, never record values.
A metrics backend that fails never fails the task: errors are logged at debug level and dropped.

.. seealso:: ``docs/metrics.md``
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "carecycle"
API_REQUESTS = f"{PREFIX}.api.requests"
API_RETRIES = f"{PREFIX}.api.retries"
API_RATE_LIMITED = f"{PREFIX}.api.rate_limited"
API_WAIT = f"{PREFIX}.api.wait"
LEADS_UPLOADED = f"{PREFIX}.leads.uploaded"
LEADS_REJECTED = f"{PREFIX}.leads.rejected"
LEADS_DUPLICATES = f"{PREFIX}.leads.duplicates"
LEADS_SUPPRESSED = f"{PREFIX}.leads.suppressed"
CUSTOMERS_EXPORTED = f"{PREFIX}.customers.exported"
CALLS_EXPORTED = f"{PREFIX}.calls.exported"

#: every name above, for the docs and the tests
ALL_METRICS = (
    API_REQUESTS,
    API_RETRIES,
    API_RATE_LIMITED,
    API_WAIT,
    LEADS_UPLOADED,
    LEADS_REJECTED,
    LEADS_DUPLICATES,
    LEADS_SUPPRESSED,
    CUSTOMERS_EXPORTED,
    CALLS_EXPORTED,
)

#: ``RequestStats`` counter -> metric; ``waited_s`` becomes the ``carecycle.api.wait`` timer
_REQUEST_COUNTERS = {"requests": API_REQUESTS, "retries": API_RETRIES, "rate_limited": API_RATE_LIMITED}
#: upload summary key -> metric
_UPLOAD_COUNTERS = {
    "uploaded": LEADS_UPLOADED,
    "rejected": LEADS_REJECTED,
    "duplicates": LEADS_DUPLICATES,
    "suppressed": LEADS_SUPPRESSED,
}


def _stats() -> Any:
    from airflow_provider_carecycle._compat import Stats

    return Stats


def incr(name: str, count: int, conn_id: str | None, *, send_zero: bool = False) -> None:
    """Add ``count`` to the counter ``name``, tagged with the connection id.

    :param name: one of :data:`ALL_METRICS`.
    :param count: how much to add.
    :param conn_id: the Airflow connection the count belongs to.
    :param send_zero: send a zero count too (a task's totals: the series then exists from the first run).
    """
    if count < 0 or (count == 0 and not send_zero):
        return
    try:
        _stats().incr(name, count=int(count), tags=_tags(conn_id))
    except Exception:  # a metrics backend never fails a task
        log.debug("Could not send metric %s.", name, exc_info=True)


def timing(name: str, seconds: float, conn_id: str | None) -> None:
    """Send ``seconds`` to the timer ``name`` (in milliseconds, as Airflow's timers), tagged; zero sends nothing.

    :param name: the timer.
    :param seconds: the time to record.
    :param conn_id: the Airflow connection the time belongs to.
    """
    if seconds <= 0:
        return
    try:
        _stats().timing(name, seconds * 1000.0, tags=_tags(conn_id))
    except Exception:
        log.debug("Could not send metric %s.", name, exc_info=True)


def _tags(conn_id: str | None) -> dict[str, str]:
    return {"conn_id": conn_id} if conn_id else {}


def request_listener(conn_id: str) -> Callable[[Mapping[str, float]], None]:
    """A ``RequestStats`` listener sending its counters as metrics for ``conn_id``.

    ``RequestStats.add(requests=1)``, ``add(retries=1, rate_limited=1)`` and ``add(waited_s=0.8)`` become
    ``carecycle.api.requests``, ``.retries``, ``.rate_limited`` and the ``carecycle.api.wait`` timer.

    :param conn_id: the hook's Airflow connection id (the metrics' tag).
    """

    def listen(counts: Mapping[str, float]) -> None:
        for key, amount in counts.items():
            if key == "waited_s":
                timing(API_WAIT, float(amount), conn_id)
            elif key in _REQUEST_COUNTERS:
                incr(_REQUEST_COUNTERS[key], int(amount), conn_id)

    return listen


def record_upload(summary: Mapping[str, Any], conn_id: str | None) -> None:
    """Send a finished lead upload's counts (a dry run sends nothing: nothing was uploaded).

    :param summary: the upload summary (``uploaded``, ``rejected``, ``duplicates``, ``dry_run``, ...).
    :param conn_id: the careCycle connection id.
    """
    if summary.get("dry_run"):
        return
    for key, name in _UPLOAD_COUNTERS.items():
        incr(name, int(summary.get(key) or 0), conn_id, send_zero=True)
