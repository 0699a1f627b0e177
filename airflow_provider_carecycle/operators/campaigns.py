"""Campaign status snapshots: the operator that writes one row per campaign with its ``customerStats`` figures, and
its outcome (:class:`CampaignSnapshot`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar

from airflow_provider_carecycle import lineage
from airflow_provider_carecycle._compat import AirflowFailException, Context
from airflow_provider_carecycle.campaign_stats import FIGURES, STATUS_COLUMN_PREFIX, read_summary
from airflow_provider_carecycle.exceptions import CareCycleNotFoundError
from airflow_provider_carecycle.links import CareCycleCampaignLink
from airflow_provider_carecycle.operators.base import CareCycleBaseOperator, rendered_arguments, rendered_path
from airflow_provider_carecycle.outcome import FileOutcome, Outcome, record_outcome
from airflow_provider_carecycle.storage import FORMATS, RecordWriter
from airflow_provider_carecycle.vocabulary import CAMPAIGN_STATUSES, STATUS_COUNT_KEYS

#: the leading columns of a snapshot row; the flattened ``customerStats`` follow
ROW_KEY_COLUMNS = ("snapshot_at", "id", "name", "status")
#: the columns of a snapshot row for the documented ``statusCounts`` keys
SNAPSHOT_COLUMNS = (
    *ROW_KEY_COLUMNS,
    *FIGURES,
    *(f"{STATUS_COLUMN_PREFIX}{key}" for key in STATUS_COUNT_KEYS),
)
#: the figures shown in the logged table
_TABLE_FIGURES = ("total", "totalCalls", "todayCalls", "status_completed", "status_pending", "status_failed")


@dataclass(frozen=True, kw_only=True)
class CampaignSnapshot(FileOutcome):
    """The outcome of :class:`CareCycleCampaignSnapshotOperator`: the file's rows written, and the campaigns'
    summaries (counts only).

    :param path: the file written (or appended to), as its ``ObjectStoragePath`` URI.
    :param count: the rows this run wrote to it.
    :param campaigns: the campaign summaries (:func:`~airflow_provider_carecycle.campaign_stats.read_summary`).
    """

    kind: ClassVar[str] = "snapshot"

    campaigns: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        """The XCom value: ``{campaign_id: {name, status, total, totalCalls, todayCalls, status_<key>...}}``."""
        return {s["id"]: {k: v for k, v in s.items() if k != "id"} for s in self.campaigns}

    def asset_extra(self) -> dict[str, int]:
        """The rows written and the campaigns."""
        return {"count": self.count, "campaigns": len(self.campaigns)}


def _as_list(name: str, value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    values = list(value)
    if not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"{name} must be a list of non-empty strings, got {value!r}.")
    return values


def format_table(summaries: Iterable[Mapping[str, Any]]) -> str:
    """A fixed-width text table of campaign summaries (id, name, status and the main figures).

    :param summaries: campaign summaries (:func:`~airflow_provider_carecycle.campaign_stats.campaign_summary`).
    """
    header = ("id", "name", "status", *_TABLE_FIGURES)
    rows = [header, *(tuple(str(s.get(c, "")) for c in header) for s in summaries)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


class CareCycleCampaignSnapshotOperator(CareCycleBaseOperator):
    """Write one row per campaign with its status and every ``customerStats`` figure, to JSON Lines or CSV.

    Campaigns are chosen by id (``campaign_ids``, one ``GET /v2/campaigns/{id}`` each) or by ``statuses`` and/or
    ``search`` (the campaign list; all campaigns when neither is given). Each row holds ``snapshot_at`` (UTC, the
    same for every row of a run), ``id``, ``name``, ``status``, ``total``, ``totalCalls``, ``todayCalls`` and
    ``status_<key>`` for every ``statusCounts`` key. With ``append=True`` the rows are added to the file's existing
    rows, so a dated ``output_path`` (e.g. ``.../{{ ds }}.jsonl``) collects a time series.

    Returns ``{campaign_id: {name, status, total, totalCalls, todayCalls, status_<key>...}}`` (counts only, small
    enough for XCom) and logs the same as a table.

    :param output_path: where to write (templated); an ``ObjectStoragePath`` URI or local path ending ``.jsonl``,
        ``.csv`` (optionally ``.gz``), or with ``format`` set.
    :param campaign_ids: the campaigns to snapshot, by UUID (templated).
    :param statuses: campaign statuses to list (templated), e.g. ``["active", "paused"]``.
    :param search: text matched against campaign names and descriptions (templated).
    :param format: ``jsonl`` or ``csv`` (default: from ``output_path``'s suffix).
    :param append: add to the rows already in ``output_path`` instead of replacing the file.
    :param carecycle_conn_id: the careCycle Airflow connection.
    :param hook_params: extra keyword arguments for the hook.
    """

    template_fields = ("output_path", "campaign_ids", "statuses", "search", "carecycle_conn_id")

    def __init__(
        self,
        *,
        output_path: str,
        campaign_ids: str | Sequence[str] | None = None,
        statuses: str | Sequence[str] | None = None,
        search: str | None = None,
        format: str | None = None,
        append: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # templated values are checked in execute, once rendered; whether they were given is known now
        if campaign_ids is not None and (statuses is not None or search is not None):
            raise ValueError("Pass either campaign_ids, or statuses and/or search, not both.")
        if format is not None and format not in FORMATS:
            raise ValueError(f"Unknown format {format!r}. Valid formats: {', '.join(FORMATS)}.")
        self.output_path = output_path
        self.campaign_ids = campaign_ids
        self.statuses = statuses
        self.search = search
        self.format = format
        self.append = append

    def _fetch_by_id(self, campaign_ids: list[str]) -> Iterator[dict[str, Any]]:
        for campaign_id in campaign_ids:
            try:
                campaign = self.hook.get_campaign(campaign_id)
            except CareCycleNotFoundError:
                raise AirflowFailException(f"careCycle campaign {campaign_id} was not found (404).") from None
            yield read_summary(campaign, campaign_id=campaign_id, required=FIGURES)

    def _fetch_listed(self, statuses: list[str]) -> Iterator[dict[str, Any]]:
        seen: set[str | None] = set()
        wanted: list[str | None] = [*statuses] if statuses else [None]
        for status in wanted:
            for campaign in self.hook.iter_campaigns(status=status, search=self.search or None, sort_direction="asc"):
                if campaign.get("id") not in seen:
                    seen.add(campaign.get("id"))
                    yield read_summary(campaign, required=FIGURES)

    def _campaigns(self) -> Iterator[dict[str, Any]]:
        """The chosen campaigns' summaries (rendered arguments checked first), fetched lazily, each answer checked
        (:func:`~airflow_provider_carecycle.campaign_stats.read_summary`).

        :raises ValueError: for ids and statuses/search together, or an unknown status.
        """
        ids, statuses = _as_list("campaign_ids", self.campaign_ids), _as_list("statuses", self.statuses)
        if ids and (statuses or self.search):
            raise ValueError("Pass either campaign_ids, or statuses and/or search, not both.")
        bad = [s for s in statuses if s not in CAMPAIGN_STATUSES]
        if bad:
            raise ValueError(f"Unknown campaign statuses {bad}. Valid statuses: {', '.join(CAMPAIGN_STATUSES)}.")
        if self.search is not None and not isinstance(self.search, str):
            raise ValueError(f"search must render to text, got {type(self.search).__name__}.")
        if ids:
            return self._fetch_by_id(ids)
        return self._fetch_listed(statuses)

    def execute(self, context: Context) -> dict[str, dict[str, Any]]:
        with rendered_arguments():
            output_path = rendered_path("output_path", self.output_path)
            campaigns = self._campaigns()  # summaries, read lazily
        CareCycleCampaignLink.persist(context, self.carecycle_conn_id, _as_list("campaign_ids", self.campaign_ids))
        snapshot_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        summaries = list(campaigns)
        rows = [{"snapshot_at": snapshot_at, **s} for s in summaries]
        extra_columns = [k for r in rows for k in r if k not in SNAPSHOT_COLUMNS]
        fieldnames = [*SNAPSHOT_COLUMNS, *dict.fromkeys(extra_columns)]
        with RecordWriter(output_path, format=self.format, fieldnames=fieldnames, append=self.append) as out:
            out.write_all(rows)
        self.log.info(
            "careCycle campaign snapshot at %s: %d campaigns, %d rows %s %s.\n%s",
            snapshot_at,
            len(rows),
            out.count,
            "appended to" if self.append else "written to",
            output_path,
            format_table(summaries),
        )
        outcome = CampaignSnapshot(path=str(out.path), count=out.count, campaigns=summaries)
        self.outcome = outcome
        record_outcome(self, context, outcome)  # the asset event
        return outcome.as_dict()

    def openlineage_datasets(self, outcome: Outcome | None) -> lineage.Datasets:
        """The campaigns read (``campaigns/<id>``, or the ``campaigns`` list) and the file written, with the rows
        written this run."""
        namespace = lineage.carecycle_namespace(self.hook.base_url)
        inputs = [lineage.input_dataset(namespace, name) for name in lineage.campaign_names(self.campaign_ids)]
        rows = outcome.count if isinstance(outcome, CampaignSnapshot) else None
        return inputs, [lineage.file_output(self.output_path, rows)]

    #: "careCycle campaign" in the task's UI: the campaign's page in careCycle's web app
    operator_extra_links = (CareCycleCampaignLink(),)
