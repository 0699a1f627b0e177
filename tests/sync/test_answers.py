"""The rules that read careCycle's answers to an upload, on their own: plain values in, plain values out, no HTTP.

The same rules against the emulator and a hostile server are in ``tests/sync/test_engine.py`` and
``tests/adversarial/test_hostile_upload.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_provider_carecycle.leads.rejection import Rejection, RejectionCode
from airflow_provider_carecycle.sync.answers import Resend, Unsettled, read_accepted, read_refused, unaccounted


@dataclass
class Refusal:
    """What a ``CareCycleValidationError`` carries, without the exception."""

    status: int | None
    code: str | None = None
    message: str = "careCycle API POST /v2/leads/upload: request rejected."
    errors: list[dict[str, Any]] = field(default_factory=list)
    failed_records: list[dict[str, Any]] = field(default_factory=list)


GROUP = [10, 11, 12, 13]  # positions in the batch, as sent


def refused(refusal: Refusal, group: list[int] = GROUP, halved: bool = False) -> Resend | Unsettled:
    return read_refused(refusal, group, halved, batch=7, unsettled=len(group) + 3)


# -- 400: isolate the leads at fault ---------------------------------------------------------------------------------


def test_a_400_naming_leads_rejects_them_and_sends_the_rest_again():
    refusal = Refusal(
        400,
        "VALIDATION_ERROR",
        errors=[
            {"path": ["records", 1, "city"], "message": "city: invalid_string"},
            {"path": ["records", 1, "zip"], "message": "zip: too_short"},
            {"path": ["records", 9, "city"], "message": "outside the group"},  # not a lead sent: ignored
            {"path": ["body"], "message": "not about a record"},
        ],
        failed_records=[{"index": 3}, {"index": True}, {"index": -1}],
    )
    step = refused(refusal)
    assert step == Resend(
        offenders=[
            Rejection("city", "API: city: city: invalid_string; zip: zip: too_short", "api_validation_error", 11),
            Rejection(None, "API: rejected by the API (VALIDATION_ERROR)", "api_validation_error", 13),
        ],
        groups=[[10, 12]],
    )


def test_a_validation_error_naming_leads_counts_whatever_its_status():
    step = refused(Refusal(422, "VALIDATION_ERROR", failed_records=[{"index": 0}]))
    assert isinstance(step, Resend) and [r.position for r in step.offenders] == [10] and step.groups == [[11, 12, 13]]


def test_a_400_naming_no_lead_bisects_the_group_down_to_the_one_lead_at_fault():
    refusal = Refusal(400, "VALIDATION_ERROR", message="careCycle API: request rejected (400 VALIDATION_ERROR).")
    assert refused(refusal) == Resend([], [[10, 11], [12, 13]])
    assert refused(refusal, [12]) == Resend(
        [Rejection(None, f"API: {refusal.message}", RejectionCode.API_VALIDATION_ERROR, 12)], []
    )


# -- 413: halve once -------------------------------------------------------------------------------------------------


def test_a_413_halves_the_group_once_and_a_413_for_a_half_is_unsettled():
    assert refused(Refusal(413)) == Resend([], [[10, 11], [12, 13]], payload_too_large=True)
    again = refused(Refusal(413), [10, 11], halved=True)
    assert again == Unsettled(
        "Batch 7: careCycle answered 413 (payload too large) even for half the batch (2 leads). Lower batch_size. "
        "5 leads of the batch stay unsettled and count as not uploaded; a rerun that resumes from the checkpoint "
        "sends them again.",
        413,
    )
    assert isinstance(refused(Refusal(413), [10]), Unsettled)  # one lead cannot be halved


# -- any other 4xx: unsettled at once --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refusal", "said"),
    [
        (Refusal(409, "CONFLICT"), "(409, code CONFLICT)"),
        (Refusal(415), "(415)"),
        (Refusal(400, "BAD_REQUEST"), "(400, code BAD_REQUEST)"),
        (Refusal(422, "not an identifier: +1 212 555 0142"), "(422)"),  # a code that is not a name is not quoted
    ],
)
def test_another_4xx_naming_no_lead_leaves_the_group_unsettled(refusal, said):
    step = refused(refusal)
    assert isinstance(step, Unsettled) and step.status == refusal.status
    assert step.message.startswith(f"Batch 7: careCycle refused the upload of 4 leads {said}. It named no lead")
    assert "+1 212" not in step.message


# -- 200: account for every lead sent --------------------------------------------------------------------------------

IDS = {10: "e10", 11: "e11", 12: None, 13: "e13"}
EXTERNAL_IDS = [IDS.get(p) for p in range(14)]


def accepted(answer: Any, group: list[int] = GROUP) -> list[Rejection] | Unsettled:
    return read_accepted(answer, EXTERNAL_IDS, group, batch=7, unsettled=9)


def test_a_200_that_accounts_for_every_lead_settles_the_group_with_its_per_record_errors():
    answer = {
        "succeeded": 2,
        "failed": 2,
        "errors": [{"externalId": "e13", "error": "Source not found"}, {"externalId": None, "error": None}],
    }
    assert accepted(answer) == [
        Rejection(None, "API: Source not found", RejectionCode.API_ERROR, 13),
        Rejection(None, "API: record failed", RejectionCode.API_ERROR, 12),  # the only lead without an externalId
    ]
    assert accepted({"succeeded": 4, "failed": 0}) == []


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (None, "an empty answer"),
        ([], "a JSON list, not an object"),
        ({}, "succeeded is missing"),
        ({"succeeded": True, "failed": 0}, "succeeded is not a whole number >= 0"),
        ({"succeeded": 4, "failed": -1}, "failed is not a whole number >= 0"),
        ({"succeeded": 3, "failed": 0}, "succeeded 3 + failed 0 is not the 4 sent"),
        ({"succeeded": 3, "failed": 1}, "errors is not a list"),
        ({"succeeded": 3, "failed": 1, "errors": []}, "failed is 1 but errors lists 0"),
        ({"succeeded": 3, "failed": 1, "errors": ["e10"]}, "an errors entry is not an object"),
    ],
)
def test_a_200_that_does_not_account_for_every_lead_leaves_the_group_unsettled(answer, problem):
    assert unaccounted(answer, 4) == problem
    step = accepted(answer)
    assert isinstance(step, Unsettled) and step.status == 200
    assert step.message == (
        f"Batch 7: careCycle's answer to an upload of 4 leads does not account for them ({problem}). None of them "
        "counts as uploaded; 9 leads of the batch stay unsettled and a rerun that resumes from the checkpoint sends "
        "them again."
    )


@pytest.mark.parametrize(
    "errors",
    [
        [{"externalId": "e99", "error": "x"}],  # not a lead sent
        [{"externalId": "e10", "error": "x"}, {"externalId": "e10", "error": "y"}],  # the same lead twice
    ],
)
def test_a_per_record_error_that_cannot_be_tied_to_one_lead_sent_leaves_the_group_unsettled(errors):
    step = accepted({"succeeded": 4 - len(errors), "failed": len(errors), "errors": errors})
    assert isinstance(step, Unsettled) and "cannot be tied to a lead sent" in step.message


def test_an_error_without_external_id_is_untied_when_several_leads_have_none():
    external_ids = [None] * 4
    answer = {"succeeded": 3, "failed": 1, "errors": [{"error": "x"}]}
    step = read_accepted(answer, external_ids, [0, 1, 2, 3], batch=0, unsettled=4)
    assert isinstance(step, Unsettled) and "errors[0]" in step.message
