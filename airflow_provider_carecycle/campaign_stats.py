"""Campaign ``customerStats``: flattening them into figures, and parsing and checking thresholds on them.

Shared by the campaign snapshot operator, the customerStats sensor and its trigger. A campaign's
``customerStats`` is ``{total, totalCalls, todayCalls, statusCounts: {expired, failed, pending, ...}}``; they hold
counts only, never patient data.

A *threshold* is a mapping of conditions that must all hold:

* keys: a ``customerStats`` figure (``total``, ``totalCalls``, ``todayCalls``), a ``statusCounts`` key
  (``completed``, ``pending``, ...), or the ratio of a status to ``total`` (``completed_ratio``, ...);
* values: a bare number means ``>=``; a pair ``(op, value)`` takes ``>=``, ``>``, ``<=``, ``<`` or ``==``.

A ratio is undefined while ``total`` is 0, and a condition on it does not hold then.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_carecycle.vocabulary import STATUS_COUNT_KEYS

#: the top-level ``customerStats`` figures
FIGURES = ("total", "totalCalls", "todayCalls")
RATIO_SUFFIX = "_ratio"
#: every key a threshold may use
THRESHOLD_KEYS = (*FIGURES, *STATUS_COUNT_KEYS, *(f"{key}{RATIO_SUFFIX}" for key in STATUS_COUNT_KEYS))
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}
#: campaign statuses after which the figures stop moving
TERMINAL_STATUSES = ("completed", "cancelled", "archived")
#: the prefix of flattened ``statusCounts`` columns in snapshot rows and XCom summaries
STATUS_COLUMN_PREFIX = "status_"


@dataclass(frozen=True)
class Condition:
    """One threshold condition: ``<key> <op> <value>``."""

    key: str
    op: str
    value: float

    def holds(self, figures: Mapping[str, float | None]) -> bool:
        """Whether the condition holds for ``figures`` (from :func:`threshold_figures`); unknown figures never do."""
        actual = figures.get(self.key)
        return actual is not None and COMPARISONS[self.op](actual, self.value)

    def __str__(self) -> str:
        return f"{self.key} {self.op} {self.value:g}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_condition(key: Any, spec: Any) -> Condition:
    if key not in THRESHOLD_KEYS:
        raise ValueError(f"Unknown threshold key {key!r}. Valid keys: {', '.join(THRESHOLD_KEYS)}.")
    if _is_number(spec):
        op, value = ">=", spec
    elif isinstance(spec, (list, tuple)) and len(spec) == 2:
        op, value = spec
    else:
        raise ValueError(
            f"Threshold {key!r} must be a number (meaning '>=') or a pair (operator, number), got {spec!r}."
        )
    if op not in COMPARISONS:
        raise ValueError(f"Unknown threshold operator {op!r} for {key!r}. Valid operators: {', '.join(COMPARISONS)}.")
    if not _is_number(value) or value < 0:
        raise ValueError(f"Threshold {key!r} needs a number >= 0, got {value!r}.")
    if key.endswith(RATIO_SUFFIX) and value > 1:
        raise ValueError(f"Threshold {key!r} is a ratio between 0 and 1, got {value!r}.")
    return Condition(key=key, op=op, value=value)


def parse_threshold(threshold: Mapping[str, Any]) -> tuple[Condition, ...]:
    """Parse and validate a threshold mapping.

    :param threshold: e.g. ``{"completed_ratio": 0.8}``, ``{"completed": 500}``, ``{"pending": ("<=", 0)}``.
    :raises ValueError: for an empty threshold, unknown keys or operators, or values out of range; the message
        lists the valid choices.
    """
    if not isinstance(threshold, Mapping) or not threshold:
        raise ValueError(
            f"threshold must be a non-empty dict of conditions, e.g. {{'completed_ratio': 0.8}}, got {threshold!r}. "
            f"Valid keys: {', '.join(THRESHOLD_KEYS)}."
        )
    return tuple(_parse_condition(key, spec) for key, spec in threshold.items())


def threshold_to_json(conditions: tuple[Condition, ...]) -> dict[str, list[Any]]:
    """The JSON-friendly form of parsed conditions (``{"completed_ratio": [">=", 0.8]}``), parseable again."""
    return {c.key: [c.op, c.value] for c in conditions}


def _int(value: Any) -> int:
    return int(value) if _is_number(value) else 0


def flatten_stats(customer_stats: Mapping[str, Any] | None) -> dict[str, int]:
    """A campaign's ``customerStats`` as flat columns: ``total``, ``totalCalls``, ``todayCalls``, ``status_<key>``.

    Every documented ``statusCounts`` key gets a column (0 when absent); keys the API adds later are kept too.

    :param customer_stats: the campaign's ``customerStats`` object.
    """
    stats = customer_stats or {}
    counts = stats.get("statusCounts") or {}
    flat = {name: _int(stats.get(name)) for name in FIGURES}
    for key in (*STATUS_COUNT_KEYS, *(k for k in counts if k not in STATUS_COUNT_KEYS)):
        flat[f"{STATUS_COLUMN_PREFIX}{key}"] = _int(counts.get(key))
    return flat


def campaign_summary(campaign: Mapping[str, Any]) -> dict[str, Any]:
    """A small, JSON-friendly summary of one campaign: id, name, status and its flattened ``customerStats``.

    :param campaign: a campaign object from the API.
    """
    return {
        "id": campaign.get("id"),
        "name": campaign.get("name"),
        "status": campaign.get("status"),
        **flatten_stats(campaign.get("customerStats")),
    }


def threshold_figures(flat: Mapping[str, Any]) -> dict[str, float | None]:
    """The values threshold keys refer to, from flattened stats (see :func:`flatten_stats`).

    :param flat: flattened stats, or a :func:`campaign_summary`.
    """
    total = flat.get("total") or 0
    figures: dict[str, float | None] = {name: flat.get(name, 0) for name in FIGURES}
    for key in STATUS_COUNT_KEYS:
        count = flat.get(f"{STATUS_COLUMN_PREFIX}{key}", 0)
        figures[key] = count
        figures[f"{key}{RATIO_SUFFIX}"] = count / total if total else None
    return figures


@dataclass(frozen=True)
class Evaluation:
    """The outcome of checking a threshold against one campaign."""

    summary: dict[str, Any]
    unmet: tuple[Condition, ...]
    terminal: bool

    @property
    def met(self) -> bool:
        """Whether every condition holds."""
        return not self.unmet

    def describe(self) -> str:
        """A one-line, PHI-free account, e.g. ``status=active; unmet: completed_ratio >= 0.8 (now 0.4)``."""
        figures = threshold_figures(self.summary)
        if self.met:
            return f"status={self.summary.get('status')}; threshold met"
        unmet = ", ".join(f"{c} (now {_show(figures.get(c.key))})" for c in self.unmet)
        return f"status={self.summary.get('status')}; unmet: {unmet}"


def _show(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def evaluate(
    campaign: Mapping[str, Any], conditions: tuple[Condition, ...], terminal_statuses: tuple[str, ...] = ()
) -> Evaluation:
    """Check ``conditions`` against a campaign.

    :param campaign: a campaign object from the API.
    :param conditions: from :func:`parse_threshold`.
    :param terminal_statuses: campaign statuses after which the figures can no longer change.
    """
    summary = campaign_summary(campaign)
    figures = threshold_figures(summary)
    unmet = tuple(c for c in conditions if not c.holds(figures))
    return Evaluation(summary=summary, unmet=unmet, terminal=summary["status"] in terminal_statuses)
