"""The rules that read careCycle's answers to a lead upload: which leads it settled, which to send again.

Pure Python (no HTTP, no Airflow): the upload engine sends a *group* of leads (positions in a batch) and hands what
came back to one of two functions.

* :func:`read_accepted`, for a 200 answer. It must account for every lead sent: ``succeeded + failed`` equal to the
  leads sent, one ``errors[]`` entry per failure, each tied to a lead sent by its ``externalId`` (or to the only lead
  without one). Its per-record errors become rejections; anything else leaves the group :class:`Unsettled`.
* :func:`read_refused`, for a 4xx (a ``CareCycleValidationError``):

  - the API names the leads at fault (``failedRecords[].index``, ``errors[].path`` into ``records``) of a 400 or a
    ``VALIDATION_ERROR``: those are rejected, the rest sent again;
  - a 400 ``VALIDATION_ERROR`` naming none: a single lead is the offender, a larger group is bisected;
  - a 413 (payload too large): the group is halved once; a 413 for a half leaves it unsettled;
  - anything else (405, 409, 415, 422, a 400 of another code, ...): unsettled at once.

:class:`Unsettled` carries the PHI-free message the engine raises as an ``UnsettledBatchError``: none of the group
counts as uploaded, and a rerun that resumes from the checkpoint sends it again. Messages name batches, counts,
statuses and error indices, never a value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard

from airflow_provider_carecycle.leads.rejection import Rejection, RejectionCode


@dataclass(frozen=True)
class Settlement:
    """What careCycle settled for some positions of a batch: accepted, or rejected for good (each rejection carries
    its ``position``)."""

    positions: list[int]
    rejections: list[Rejection]


@dataclass(frozen=True)
class Unsettled:
    """careCycle did not settle the group: the whole message (PHI-free) and the answer's HTTP status."""

    message: str
    status: int | None


@dataclass(frozen=True)
class Resend:
    """What to do after a 4xx: reject ``offenders`` for good, send each of ``groups`` again.

    :param offenders: the leads the API refused (settled), each with its ``position``.
    :param groups: the positions to send again, each group in its own request.
    :param payload_too_large: the groups are the two halves of a group careCycle answered 413.
    """

    offenders: list[Rejection]
    groups: list[list[int]]
    payload_too_large: bool = False


class Refusal(Protocol):
    """What a refused upload says (a ``CareCycleValidationError``): its status and code, the PHI-free message, and
    the ``errors``/``failedRecords`` entries that may name the leads at fault."""

    @property
    def status(self) -> int | None: ...

    @property
    def code(self) -> str | None: ...

    @property
    def message(self) -> str: ...

    @property
    def errors(self) -> Sequence[Any]: ...

    @property
    def failed_records(self) -> Sequence[Any]: ...


def read_refused(refusal: Refusal, group: list[int], halved: bool, *, batch: int, unsettled: int) -> Resend | Unsettled:
    """What a 4xx answer to the upload of ``group`` settles, and what to send again (see the module docstring).

    :param refusal: the error the hook raised.
    :param group: the positions sent, in the order sent.
    :param halved: ``group`` is already half of a group careCycle answered 413.
    :param batch: the batch number, for messages.
    :param unsettled: how many leads of the batch stay unsettled if this group is not settled, for messages.
    """
    named = _named_offenders(refusal, len(group))
    validation = refusal.code == "VALIDATION_ERROR"
    if named and (refusal.status == 400 or validation):
        offenders = []
        for local, found in sorted(named.items()):
            field_name = found[0][0] if found else None
            text = "; ".join(f"{f}: {m}" if f else m for f, m in found) or "rejected by the API (VALIDATION_ERROR)"
            code = RejectionCode.API_VALIDATION_ERROR
            offenders.append(Rejection(field_name, f"API: {text}", code, position=group[local]))
        return Resend(offenders, [[p for i, p in enumerate(group) if i not in named]])
    if refusal.status == 400 and validation:
        if len(group) == 1:
            refused = Rejection(None, f"API: {refusal.message}", RejectionCode.API_VALIDATION_ERROR, group[0])
            return Resend([refused], [])
        middle = len(group) // 2
        return Resend([], [group[:middle], group[middle:]])
    if refusal.status == 413 and not halved and len(group) > 1:
        middle = len(group) // 2
        return Resend([], [group[:middle], group[middle:]], payload_too_large=True)
    if refusal.status == 413:
        what = f"careCycle answered 413 (payload too large) even for half the batch ({len(group)} leads)"
        advice = "Lower batch_size."
    else:
        code = f", code {refusal.code}" if isinstance(refusal.code, str) and refusal.code.isidentifier() else ""
        what = f"careCycle refused the upload of {len(group)} leads ({refusal.status}{code})"
        advice = "It named no lead at fault, so the batch was neither bisected nor retried."
    return Unsettled(
        f"Batch {batch}: {what}. {advice} {unsettled} leads of the batch stay unsettled and count as not "
        "uploaded; a rerun that resumes from the checkpoint sends them again.",
        refusal.status,
    )


def _named_offenders(refusal: Refusal, size: int) -> dict[int, list[tuple[str | None, str]]]:
    """The group's leads the API named (index in the group -> ``(field, message)`` pairs, maybe none)."""
    reasons: dict[int, list[tuple[str | None, str]]] = {}
    for issue in refusal.errors:
        local = _record_position(issue.get("path"), size) if isinstance(issue, dict) else None
        if local is not None:
            path = issue.get("path") or []
            field_name = str(path[2]) if len(path) > 2 else None
            reasons.setdefault(local, []).append((field_name, str(issue.get("message") or "invalid")))
    for failed in refusal.failed_records:
        index = failed.get("index") if isinstance(failed, dict) else None
        if _is_count(index) and index < size:
            reasons.setdefault(index, [])
    return reasons


def _record_position(path: Any, size: int) -> int | None:
    """The record index an API error path (``["records", 3, "dateOfBirth"]``) points at, if any."""
    if isinstance(path, list) and len(path) >= 2 and path[0] == "records" and _is_count(path[1]):
        return path[1] if path[1] < size else None
    return None


def read_accepted(
    answer: Any, external_ids: Sequence[Any], group: list[int], *, batch: int, unsettled: int
) -> list[Rejection] | Unsettled:
    """The per-record rejections of a 200 answer to the upload of ``group``, once it accounts for every lead sent.

    :param answer: the decoded answer.
    :param external_ids: the ``externalId`` of each lead of the batch by position (``None`` for a lead without one).
    :param group: the positions sent.
    :param batch: the batch number, for messages.
    :param unsettled: how many leads of the batch stay unsettled if this group is not settled, for messages.
    :return: the rejections, each with its ``position``; or :class:`Unsettled` when the answer does not account for
        every lead sent, or one of its ``errors[]`` cannot be tied to exactly one lead sent.
    """
    problem = unaccounted(answer, len(group))
    if problem:
        return Unsettled(
            f"Batch {batch}: careCycle's answer to an upload of {len(group)} leads does not account for "
            f"them ({problem}). None of them counts as uploaded; {unsettled} leads of the batch stay unsettled "
            "and a rerun that resumes from the checkpoint sends them again.",
            200,
        )
    by_external_id = {str(external_ids[p]): p for p in group if external_ids[p] is not None}
    without_id = [p for p in group if external_ids[p] is None]
    rejections: list[Rejection] = []
    untied: list[int] = []
    taken: set[int] = set()
    for index, error in enumerate(answer.get("errors") or []):
        external_id = error.get("externalId")
        if external_id is not None:
            position = by_external_id.get(str(external_id))
        else:
            position = without_id[0] if len(without_id) == 1 else None
        if position is None or position in taken:
            untied.append(index)
            continue
        taken.add(position)
        reason = f"API: {error.get('error') or 'record failed'}"
        rejections.append(Rejection(None, reason, RejectionCode.API_ERROR, position))
    if untied:
        return Unsettled(
            f"Batch {batch}: careCycle reported {len(untied)} per-record error(s) (errors[{_indices(untied)}]) "
            "that cannot be tied to a lead sent: an externalId not in the batch, the same lead twice, or no "
            "externalId while several leads have none. Which leads failed is unknown, so none of the "
            f"{len(group)} counts as uploaded; {unsettled} leads stay unsettled. Give every lead an "
            "externalId so careCycle's errors name it.",
            200,
        )
    return rejections


def unaccounted(answer: Any, sent: int) -> str | None:
    """Why a 200 answer to an upload of ``sent`` records does not account for each of them, or ``None``.

    careCycle answers ``{"succeeded": int, "failed": int, "errors": [{"id", "externalId", "error"}]}``:
    ``succeeded + failed`` must be the records sent and ``errors`` must hold one object per failure. Only types and
    counts are described, never values.

    :param answer: the decoded answer.
    :param sent: how many records were sent.
    """
    if not isinstance(answer, dict):
        return "an empty answer" if answer is None else f"a JSON {type(answer).__name__}, not an object"
    counts: dict[str, int] = {}
    for name in ("succeeded", "failed"):
        value = answer.get(name)
        if not _is_count(value):
            return f"{name} is {'missing' if value is None else 'not a whole number >= 0'}"
        counts[name] = value
    if counts["succeeded"] + counts["failed"] != sent:
        return f"succeeded {counts['succeeded']} + failed {counts['failed']} is not the {sent} sent"
    errors = answer.get("errors")
    if errors is None and counts["failed"] == 0:
        return None
    if not isinstance(errors, list):
        return "errors is not a list"
    if len(errors) != counts["failed"]:
        return f"failed is {counts['failed']} but errors lists {len(errors)}"
    if not all(isinstance(error, dict) for error in errors):
        return "an errors entry is not an object"
    return None


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _indices(indices: list[int], most: int = 5) -> str:
    shown = ", ".join(str(i) for i in indices[:most])
    return shown + (", ..." if len(indices) > most else "")
