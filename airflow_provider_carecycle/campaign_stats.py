"""Campaign ``customerStats``: flattening them into figures, and parsing and checking thresholds on them.

Shared by the campaign snapshot operator, the customerStats sensor and its trigger. A campaign's
``customerStats`` is ``{total, totalCalls, todayCalls, statusCounts: {expired, failed, pending, ...}}``; they hold
counts only, never patient data.

A *threshold* is a mapping of conditions that must all hold:

* keys: a ``customerStats`` figure (``total``, ``totalCalls``, ``todayCalls``), a ``statusCounts`` key
  (``completed``, ``pending``, ...), or the ratio of a status to ``total`` (``completed_ratio``, ...);
* values: a bare number means ``>=``; a pair ``(op, value)`` takes ``>=``, ``>``, ``<=``, ``<`` or ``==``.

A ratio is undefined while ``total`` is 0, and a condition on it does not hold then.

An answer is read only once it has been checked (:func:`read_summary`): it must be about the campaign asked for,
have a ``customerStats`` object holding every figure the reader counts, and every count in it must be a whole number
of at least 0. Anything else is a malformed answer (a retryable
:class:`~airflow_provider_carecycle.exceptions.CareCycleMalformedAnswerError`), never a figure of 0 that could meet a
threshold.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_carecycle.exceptions import CareCycleMalformedAnswerError
from airflow_provider_carecycle.ids import is_uuid
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
#: the ``customerStats`` member that splits ``total`` by status
STATUS_COUNTS = "statusCounts"


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

    @property
    def counts(self) -> tuple[str, ...]:
        """The ``customerStats`` figures the condition reads (a ratio reads its status and ``total``), as
        :func:`read_summary` names them: ``total``, ``statusCounts.completed``, ..."""
        if self.key in FIGURES:
            return (self.key,)
        if self.key.endswith(RATIO_SUFFIX):
            return (f"{STATUS_COUNTS}.{self.key[: -len(RATIO_SUFFIX)]}", "total")
        return (f"{STATUS_COUNTS}.{self.key}",)

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


def count_value(value: Any) -> int | None:
    """``value`` as a count: a whole number of at least 0, else ``None``.

    JSON does not tell ``5`` from ``5.0``, so a float with a whole value counts as that integer; a fraction, a
    negative number, ``NaN``, infinity, a boolean and text (even ``"5"``) are not counts.

    :param value: a figure from an answer.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:  # is_integer() is False for NaN and inf
        return int(value)
    return None


def _count_problem(value: Any) -> str:
    """Why ``value`` is not a count, in words that never repeat the value."""
    if isinstance(value, bool):
        return "is a boolean, not a count"
    if isinstance(value, (int, float)):
        return "is negative" if value < 0 else "is not a whole number"
    if value is None:
        return "is null"
    return f"is a JSON {_JSON_KIND.get(type(value), 'value')}, not a number"


_JSON_KIND: dict[type, str] = {str: "string", list: "array", dict: "object"}


def flatten_stats(customer_stats: Mapping[str, Any] | None) -> dict[str, int]:
    """A campaign's ``customerStats`` as flat columns: ``total``, ``totalCalls``, ``todayCalls``, ``status_<key>``.

    Every documented ``statusCounts`` key gets a column (0 when absent); keys the API adds later are kept too when
    they hold a count. Lenient: a figure that is missing or not a count becomes 0, so read answers through
    :func:`read_summary`, which refuses them first.

    :param customer_stats: the campaign's ``customerStats`` object.
    """
    stats = customer_stats if isinstance(customer_stats, Mapping) else {}
    counts = stats.get(STATUS_COUNTS)
    counts = counts if isinstance(counts, Mapping) else {}
    flat = {name: count_value(stats.get(name)) or 0 for name in FIGURES}
    for key in STATUS_COUNT_KEYS:
        flat[f"{STATUS_COLUMN_PREFIX}{key}"] = count_value(counts.get(key)) or 0
    for key, value in counts.items():
        if key not in STATUS_COUNT_KEYS and isinstance(key, str) and count_value(value) is not None:
            flat[f"{STATUS_COLUMN_PREFIX}{key}"] = count_value(value) or 0
    return flat


def campaign_summary(campaign: Mapping[str, Any]) -> dict[str, Any]:
    """A small, JSON-friendly summary of one campaign: id, name, status and its flattened ``customerStats``.

    Lenient (see :func:`flatten_stats`); :func:`read_summary` checks the answer first.

    :param campaign: a campaign object from the API.
    """
    return {
        "id": campaign.get("id"),
        "name": campaign.get("name"),
        "status": campaign.get("status"),
        **flatten_stats(campaign.get("customerStats")),
    }


def stats_problem(
    campaign: Mapping[str, Any], *, campaign_id: str | None = None, required: tuple[str, ...] = ()
) -> str | None:
    """What makes a campaign answer unfit to read figures from, or ``None`` when it is fit.

    Unfit: an ``id`` other than ``campaign_id`` (when given; UUIDs compare case-insensitively), no ``customerStats``
    object, a ``statusCounts`` that is not an object, a ``required`` figure that is missing, or any documented
    figure that is present but not a count (:func:`count_value`). The words name the field, never its value.

    :param campaign: a campaign object from the API.
    :param campaign_id: the campaign asked for, which the answer must be about.
    :param required: figures that must be present: ``total``, ``totalCalls``, ``todayCalls``, ``statusCounts.<key>``.
    """
    if campaign_id is not None:
        answered = campaign.get("id")
        if not isinstance(answered, str) or answered.lower() != campaign_id.lower():
            return "its 'id' is missing" if answered is None else "its 'id' names another campaign"
    stats = campaign.get("customerStats")
    if not isinstance(stats, Mapping):
        return "it has no 'customerStats' object"
    counts = stats.get(STATUS_COUNTS)
    if counts is not None and not isinstance(counts, Mapping):
        return f"'customerStats.{STATUS_COUNTS}' is not an object"
    fields = {name: stats.get(name, _MISSING) for name in FIGURES}
    for key in STATUS_COUNT_KEYS:
        fields[f"{STATUS_COUNTS}.{key}"] = (counts or {}).get(key, _MISSING)
    for name, value in fields.items():
        if value is _MISSING:
            if name in required:
                return f"'customerStats.{name}' is missing"
        elif count_value(value) is None:
            return f"'customerStats.{name}' {_count_problem(value)}"
    return None


_MISSING = object()


def read_summary(
    campaign: Mapping[str, Any], *, campaign_id: str | None = None, required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """:func:`campaign_summary` of a campaign answer that :func:`stats_problem` finds fit.

    :param campaign: a campaign object from the API.
    :param campaign_id: the campaign asked for (``None`` for an item of the campaign list).
    :param required: figures that must be present (see :func:`stats_problem`).
    :raises CareCycleMalformedAnswerError: (retryable) naming the campaign and the field, never a value.
    """
    problem = stats_problem(campaign, campaign_id=campaign_id, required=required)
    if problem is not None:
        named = campaign_id if campaign_id is not None else campaign.get("id")
        which = f"campaign {named}" if is_uuid(named) else "a campaign"
        raise CareCycleMalformedAnswerError(f"careCycle API: malformed answer for {which}: {problem}.", status=200)
    return campaign_summary(campaign)


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
    campaign: Mapping[str, Any],
    conditions: tuple[Condition, ...],
    terminal_statuses: tuple[str, ...] = (),
    *,
    campaign_id: str,
) -> Evaluation:
    """Check ``conditions`` against a campaign answer, once :func:`read_summary` found it fit.

    :param campaign: a campaign object from the API.
    :param conditions: from :func:`parse_threshold`.
    :param terminal_statuses: campaign statuses after which the figures can no longer change.
    :param campaign_id: the campaign asked for: an answer about another one is malformed.
    :raises CareCycleMalformedAnswerError: (retryable) for an answer about another campaign, without
        ``customerStats`` or a figure a condition counts, or with a figure that is not a count.
    """
    required = tuple(dict.fromkeys(name for c in conditions for name in c.counts))
    summary = read_summary(campaign, campaign_id=campaign_id, required=required)
    figures = threshold_figures(summary)
    unmet = tuple(c for c in conditions if not c.holds(figures))
    return Evaluation(summary=summary, unmet=unmet, terminal=summary["status"] in terminal_statuses)
