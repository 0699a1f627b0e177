"""What a finished careCycle task reports: its outcome, and the metrics and asset events sent for it.

The interface every operator family follows:

* each family has one outcome type, an :class:`Outcome`: typed, PHI-free (counts and paths), with the one
  :meth:`Outcome.as_dict` that is the task's XCom value and that its ``get_openlineage_facets_on_complete`` reads.
  The lead upload family's is ``UploadSummary``; a task that writes one file (the customer and call exports, the
  campaign snapshot) has a :class:`FileOutcome` (``CustomersExport``, ``CallsExport``, ``CampaignSnapshot``, each
  beside its operator);
* an operator keeps its outcome on the public attribute ``self.outcome`` (``None`` before ``execute``) and calls
  :func:`record_outcome` once, at the end of ``execute``, to send the metrics and fill the task's outlets: what is
  sent depends on the outcome's type.

Nothing here may fail the task: a broken metrics backend or outlet is logged and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from airflow_provider_carecycle import assets, metrics

log = logging.getLogger(__name__)


@runtime_checkable
class Outcome(Protocol):
    """What a finished careCycle task reports: PHI-free counts (and paths)."""

    def as_dict(self) -> dict[str, Any]:
        """The task's XCom value."""
        ...


@dataclass(frozen=True, kw_only=True)
class FileOutcome:
    """The outcome of a task that writes one file: the file's URI and the rows this run wrote to it.

    A subclass names its :attr:`kind`, the :attr:`metric` counting its rows (if any), its XCom value
    (:meth:`as_dict`) and the counts of its asset event (:meth:`asset_extra`).

    :param path: the file written, as its ``ObjectStoragePath`` URI.
    :param count: the rows this run wrote to it.
    """

    #: what the task is, in log lines
    kind: ClassVar[str]
    #: the counter of the rows written (:mod:`~airflow_provider_carecycle.metrics`), or ``None``
    metric: ClassVar[str | None] = None

    path: str
    count: int

    def as_dict(self) -> dict[str, Any]:
        """The task's XCom value."""
        raise NotImplementedError

    def asset_extra(self) -> dict[str, int]:
        """The counts the file's asset event carries."""
        return {"count": self.count}


def record_outcome(operator: Any, context: Mapping[str, Any], outcome: Outcome) -> None:
    """Send ``outcome``'s metrics and emit its asset event on ``operator``'s outlets.

    A :class:`FileOutcome` counts its rows (:attr:`FileOutcome.metric`) and is an event for its file; any other
    outcome is a lead upload's (``UploadSummary``), whose :meth:`~Outcome.as_dict` carries the upload counts: they are
    sent, and, unless it was a dry run, an event for ``carecycle://<host>/leads``.

    :param operator: the task that just ran (its ``carecycle_conn_id`` tags the metrics).
    :param context: its context.
    :param outcome: what it reports.
    """
    conn_id = getattr(operator, "carecycle_conn_id", None)
    kind = outcome.kind if isinstance(outcome, FileOutcome) else "upload"
    try:
        if isinstance(outcome, FileOutcome):
            if outcome.metric is not None:
                metrics.incr(outcome.metric, outcome.count, conn_id, send_zero=True)
            assets.emit_asset_events(operator, context, assets.file_uri(outcome.path), outcome.asset_extra())
        else:
            counts = outcome.as_dict()
            metrics.record_upload(counts, conn_id)
            if not counts.get("dry_run"):
                extra: dict[str, Any] = {
                    k: counts[k] for k in ("total", "uploaded", "rejected", "duplicates") if k in counts
                }
                assets.emit_asset_events(operator, context, assets.leads_uri(operator.hook.base_url), extra)
    except Exception as err:  # reporting never fails a task that did its work
        log.warning("Could not report metrics/asset events for %s: %s.", kind, type(err).__name__)
