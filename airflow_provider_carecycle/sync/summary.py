"""The lead upload family's outcome: what an upload reports, counts only, never record contents.

:class:`UploadSummary` is what :class:`~airflow_provider_carecycle.sync.engine.LeadUploader` returns and what every
lead upload operator (the file/records upload, the SQL and the CareCloud CRM transfers) keeps on ``self.outcome``;
its :meth:`~UploadSummary.as_dict` is the task's XCom value and what its metrics, asset event and lineage read.

Pure Python: no Airflow.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: how many of the most frequent rejection reasons the XCom value lists
TOP_REASONS = 5


@dataclass
class UploadSummary:
    """The outcome of an upload: counts only, never record contents (this is what goes to XCom).

    ``total == uploaded + rejected + duplicates + unchanged + suppressed`` once every batch is settled.

    :param total: source records read.
    :param valid: source records that passed validation (duplicates included).
    :param uploaded: leads the API accepted (in this run or, when resuming, in an earlier one).
    :param rejected: source records rejected, by validation or by the API.
    :param duplicates: valid records merged into an earlier record with the same identity.
    :param unchanged: leads not sent because the sync ledger holds them, unchanged, as accepted by careCycle.
    :param suppressed: leads not sent because they may not be called (``doNotCall``) and careCycle never held them
        (the sync ledger does not know them): the CareCloud CRM transfer's consent rules.
    :param batches: batches the deduplicated leads were cut into.
    :param skipped_batches: batches already settled by an earlier run (from the checkpoint).
    :param rejected_path: where the rejected records were written, or ``None``.
    :param elapsed_s: seconds the run took.
    :param dry_run: nothing was sent.
    :param crm_rows: the CRM customers read, for the CareCloud CRM transfer (``None``, and not in XCom, otherwise).
    :param watermark: the CRM watermark the transfer wrote (ISO 8601), or ``None`` (then not in XCom).
    :param fields_dropped: invalid optional fields left out of leads that were sent (``invalid_optional="drop"``),
        counted per PHI-free reason (which starts with the field: ``"email: not a valid e-mail address ..."``).
    """

    total: int = 0
    valid: int = 0
    uploaded: int = 0
    rejected: int = 0
    duplicates: int = 0
    unchanged: int = 0
    suppressed: int = 0
    batches: int = 0
    skipped_batches: int = 0
    rejected_path: str | None = None
    elapsed_s: float = 0.0
    dry_run: bool = False
    reasons: Counter[str] = field(default_factory=Counter, repr=False)
    #: the source rows (1-based) of the leads careCycle refused per record, in this run or in the earlier one a
    #: checkpoint resumes (not in XCom: for a source that must offer them again, like the CRM watermark)
    refused_rows: list[int] = field(default_factory=list, repr=False)
    crm_rows: int | None = None
    watermark: str | None = None
    fields_dropped: Counter[str] = field(default_factory=Counter, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The XCom value: the counts and the most frequent (PHI-free) rejection reasons; for the CRM transfer,
        ``crm_rows`` and the ``watermark`` it wrote, after them."""
        out: dict[str, Any] = {
            "total": self.total,
            "valid": self.valid,
            "uploaded": self.uploaded,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "unchanged": self.unchanged,
            "suppressed": self.suppressed,
            "batches": self.batches,
            "skipped_batches": self.skipped_batches,
            "rejected_path": self.rejected_path,
            "elapsed_s": round(self.elapsed_s, 3),
            "dry_run": self.dry_run,
            "top_reasons": [[reason, count] for reason, count in self.top_reasons()],
            "fields_dropped": dict(self.fields_dropped.most_common()),
        }
        if self.crm_rows is not None:
            out["crm_rows"] = self.crm_rows
        if self.watermark is not None:
            out["watermark"] = self.watermark
        return out

    def top_reasons(self, n: int = TOP_REASONS) -> list[tuple[str, int]]:
        """The ``n`` most frequent PHI-free rejection reasons with their counts."""
        return self.reasons.most_common(n)
