"""What a finished careCycle task reports: its outcome, and the metrics and asset events sent for it.

The interface every operator family follows (issue 21):

* each family has one outcome type, a :class:`Outcome`: typed, PHI-free (counts and paths), with the one
  :meth:`Outcome.as_dict` that is the task's XCom value (keys and values as they were) and that its
  ``get_openlineage_facets_on_complete`` reads;
* an operator keeps its outcome on the public attribute ``self.outcome`` (``None`` before ``execute``) and calls
  ``record_outcome(operator, context, outcome)`` once, at the end of ``execute``, to send the metrics and fill the
  task's outlets; what is sent depends on the outcome's type, not on a string passed alongside.

Nothing here may fail the task: a broken metrics backend or outlet is logged and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from airflow_provider_carecycle import assets, metrics

log = logging.getLogger(__name__)


@runtime_checkable
class Outcome(Protocol):
    """What a finished careCycle task reports: PHI-free counts (and paths)."""

    def as_dict(self) -> dict[str, Any]:
        """The task's XCom value, exactly as before this type existed (keys and values unchanged)."""
        ...


#: the summary keys kept, per kind of task (counts and paths only: never record values)
_KEPT = {
    "upload": ("total", "valid", "uploaded", "rejected", "duplicates", "batches", "dry_run", "crm_rows"),
    "customers": ("count", "pages"),
    "calls": ("count", "pages", "customers", "missing_customers"),
    "snapshot": ("count", "campaigns"),
}


def record_outcome(operator: Any, context: Mapping[str, Any], kind: str, summary: Mapping[str, Any]) -> None:
    """Keep ``summary``'s counts on ``operator``, send its metrics and emit its asset event.

    :param operator: the task that just ran.
    :param context: its context.
    :param kind: ``upload``, ``customers``, ``calls`` or ``snapshot``.
    :param summary: the task's summary (``path`` for files; the counts of :data:`_KEPT`).
    """
    counts = {key: summary[key] for key in _KEPT[kind] if summary.get(key) is not None}
    operator._carecycle_outcome = counts
    conn_id = getattr(operator, "carecycle_conn_id", None)
    try:
        if kind == "upload":
            metrics.record_upload(counts, conn_id)
            if not counts.get("dry_run"):
                uri = assets.leads_uri(operator.hook.base_url)
                extra: dict[str, Any] = {
                    k: counts[k] for k in ("total", "uploaded", "rejected", "duplicates") if k in counts
                }
                assets.emit_asset_events(operator, context, uri, extra)
        else:
            if kind in ("customers", "calls"):
                metrics.record_export(kind, int(counts.get("count", 0)), conn_id)
            assets.emit_asset_events(operator, context, assets.file_uri(summary["path"]), counts)
    except Exception as err:  # reporting never fails a task that did its work
        log.warning("Could not report metrics/asset events for %s: %s.", kind, type(err).__name__)
