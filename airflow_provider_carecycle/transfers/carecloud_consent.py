"""careCycle -> CareCloud CRM: a do-not-call heard on a careCycle call withdraws the customer's consent in the CRM.

.. seealso:: ``docs/operators/consent.md``
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import cached_property
from typing import Any

from airflow_provider_carecycle import lineage
from airflow_provider_carecycle._compat import AirflowException, Context
from airflow_provider_carecycle.carecloud.consent import AGREEMENT_KEYS, CONSENT_WITHDRAWN, STATE_DELETED
from airflow_provider_carecycle.carecloud.exceptions import CareCloudAuthError, CareCloudNotFoundError
from airflow_provider_carecycle.carecloud.hook import CareCloudCrmHook
from airflow_provider_carecycle.exceptions import ApiError
from airflow_provider_carecycle.operators.base import CareCycleBaseOperator, rendered_arguments
from airflow_provider_carecycle.outcome import Outcome
from airflow_provider_carecycle.sync.stores import document_store
from airflow_provider_carecycle.vocabulary import DO_NOT_CALL_DISPOSITION

#: how many times a customer is read again and written after a concurrent change, at most
DEFAULT_MAX_ATTEMPTS = 3
#: an incremental run reads the careCycle customers whose last call is at or after the watermark's day minus this
OVERLAP = timedelta(days=1)
_CRM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_STATE_VERSION = 1


@dataclass
class WriteBackSummary:
    """The outcome of a write-back: counts only, never record contents (the XCom value).

    :param candidates: careCycle customers read that carry ``doNotCall`` or a listed disposition.
    :param withdrawn: CRM customers whose consent this run withdrew (written and checked).
    :param already_withdrawn: CRM customers whose consent was already withdrawn (or who are deleted): no write.
    :param not_from_crm: candidates without a CareCloud ``customer_id`` as their ``externalId``, or one the CRM does not
        know.
    :param conflicts_retried: times a customer changed between the read and the write and was read again.
    :param failed: customers whose consent could not be withdrawn (the task then fails, after the others).
    :param dry_run: nothing was written; ``to_withdraw`` lists the CRM customer ids it would change.
    """

    candidates: int = 0
    withdrawn: int = 0
    already_withdrawn: int = 0
    not_from_crm: int = 0
    conflicts_retried: int = 0
    failed: int = 0
    dry_run: bool = False
    watermark: str | None = None
    to_withdraw: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The XCom value (CRM customer ids only in a dry run's ``to_withdraw``)."""
        out: dict[str, Any] = {
            "candidates": self.candidates,
            "withdrawn": self.withdrawn,
            "already_withdrawn": self.already_withdrawn,
            "not_from_crm": self.not_from_crm,
            "conflicts_retried": self.conflicts_retried,
            "failed": self.failed,
            "dry_run": self.dry_run,
        }
        if self.dry_run:
            out["to_withdraw"] = list(self.to_withdraw)
        if self.watermark is not None:
            out["watermark"] = self.watermark
        return out


class _Conflict(Exception):
    """The customer changed between the read and the write."""


class CareCycleDoNotCallToCareCloudOperator(CareCycleBaseOperator):
    """Withdraw, in CareCloud CRM, the consent of every careCycle customer who said "do not call".

    Reads careCycle's customers that carry ``doNotCall`` (or whose last call's disposition is one of
    ``dispositions``) and whose ``externalId`` is a CareCloud ``customer_id`` (the CRM feed's leads), and withdraws the
    consent ``consent_text_id`` (default: marketing communication, which governs calls) of each in the CRM.

    ``PUT /customers/{customer_id}`` replaces the whole record, so each write is read-modify-write: read the
    customer, change that one consent, read it again just before writing (a ``last_change`` that moved means someone
    changed it: start over from the new record, at most ``max_attempts`` times; a stale record is never written back),
    write everything else back exactly as read, and read again to check. A customer whose consent is already withdrawn
    (or who is deleted) costs no write.

    Incremental by default: the first run reads every careCycle customer; later runs only those whose last call is on
    or after the day before the previous successful run (``state_path`` keeps that day). A ``doNotCall`` set in
    careCycle without a call is found by a run with ``incremental=False`` (a periodic full sweep).

    Returns ``candidates``, ``withdrawn``, ``already_withdrawn``, ``not_from_crm``, ``conflicts_retried``,
    ``failed``, ``dry_run`` (and ``to_withdraw``, the CRM customer ids, in a dry run; ``watermark``). Fails, after
    trying every customer, when any could not be withdrawn: a do-not-call is never dropped, and the next run tries
    again (the watermark does not advance).

    .. seealso:: ``docs/operators/consent.md``

    :param carecloud_crm_conn_id: the CareCloud CRM Airflow connection.
    :param carecloud_hook_params: extra keyword arguments for :class:`CareCloudCrmHook`.
    :param consent_text_id: the ``text_id`` of the consent to withdraw (templated; resolved through the CRM's consent
        catalogue once per run; a ``text_id`` it does not list is an error).
    :param dispositions: last-call dispositions that mean "do not call" besides the ``doNotCall`` flag (templated;
        default ``["Do Not Call"]``; ``[]``: the flag only).
    :param incremental: read only the customers called since the previous successful run (needs ``state_path``).
    :param state_path: where the incremental state is kept: a JSON file (local path or object storage URI; templated).
    :param dry_run: read and decide, write nothing; ``to_withdraw`` lists the CRM customer ids it would change.
    :param max_attempts: reads-and-writes per customer when it keeps changing under the write (at least 1).
    :param extra_params: raw ``GET /v2/customers`` query parameters (e.g. ``{"sourceIds": "..."}``; templated).
    :param kwargs: the careCycle connection arguments (``carecycle_conn_id``, ``hook_params``) and ``BaseOperator``'s.
    """

    template_fields: tuple[str, ...] = ("consent_text_id", "dispositions", "state_path", "extra_params")
    template_fields_renderers = {"dispositions": "json", "extra_params": "json"}

    def __init__(
        self,
        *,
        carecloud_crm_conn_id: str = CareCloudCrmHook.default_conn_name,
        carecloud_hook_params: Mapping[str, Any] | None = None,
        consent_text_id: str = "marketing_communication",
        dispositions: Sequence[str] | None = (DO_NOT_CALL_DISPOSITION,),
        incremental: bool = True,
        state_path: str | None = None,
        dry_run: bool = False,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        extra_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {max_attempts!r}.")
        if incremental and state_path is None:
            raise ValueError(
                "incremental=True keeps the day of the last successful run in state_path (a JSON file): set "
                "state_path, or incremental=False to read every careCycle customer on each run."
            )
        self.carecloud_crm_conn_id = carecloud_crm_conn_id
        self.carecloud_hook_params = dict(carecloud_hook_params or {})
        self.consent_text_id = consent_text_id
        self.dispositions = dispositions
        self.incremental = bool(incremental)
        self.state_path = state_path
        self.is_dry_run = bool(dry_run)
        self.max_attempts = max_attempts
        self.extra_params = extra_params

    @cached_property
    def carecloud_hook(self) -> CareCloudCrmHook:
        """The CareCloud CRM hook, built on first use (at run time)."""
        return CareCloudCrmHook(self.carecloud_crm_conn_id, **self.carecloud_hook_params)

    # -- arguments and state -------------------------------------------------------------------------------------

    def _check_rendered(self) -> tuple[str, frozenset[str]]:
        if not isinstance(self.consent_text_id, str) or not self.consent_text_id.strip():
            raise ValueError(f"consent_text_id must be a consent's text_id, got {self.consent_text_id!r}.")
        dispositions = self.dispositions or ()
        if isinstance(dispositions, str) or not all(isinstance(d, str) and d for d in dispositions):
            raise ValueError("dispositions must render to a list of disposition names, e.g. ['Do Not Call'].")
        if self.extra_params is not None and not isinstance(self.extra_params, Mapping):
            raise ValueError(f"extra_params must render to a mapping, got {type(self.extra_params).__name__}.")
        if self.incremental and (not isinstance(self.state_path, str) or not self.state_path.strip()):
            raise ValueError("state_path rendered empty; incremental=True needs it.")
        return self.consent_text_id.strip(), frozenset(dispositions)

    def _state_key(self) -> dict[str, str]:
        """What the state belongs to: this careCycle (a hash of URL and key) and this CRM."""
        return {"destination": self.hook.destination_id, "crm": self.carecloud_hook.base_url}

    def _since(self) -> date | None:
        """The first day of last calls to read (``None``: read every customer)."""
        if not self.incremental:
            return None
        state = document_store(self.state_path).load()
        ok = (
            isinstance(state, dict)
            and state.get("version") == _STATE_VERSION
            and all(state.get(k) == v for k, v in self._state_key().items())
            and isinstance(state.get("day"), str)
        )
        if state is not None and not ok:
            self.log.warning("The write-back state in %s is not this task's; reading every customer.", self.state_path)
        if not ok:
            return None
        try:
            return date.fromisoformat(state["day"]) - OVERLAP
        except ValueError:
            return None

    # -- the run -------------------------------------------------------------------------------------------------

    def _candidates(self, since: date | None, dispositions: frozenset[str]) -> Iterator[dict[str, Any]]:
        filters: dict[str, Any] = {} if since is None else {"last_call_start_date": since}
        seen: set[str] = set()
        for customer in self.hook.iter_customers(extra_params=self.extra_params, **filters):
            if customer.get("doNotCall") is not True and customer.get("lastCallDisposition") not in dispositions:
                continue
            key = str(customer.get("id"))
            if key in seen:
                continue
            seen.add(key)
            yield customer

    def _consent_id(self, text_id: str) -> str:
        for consent in self.carecloud_hook.iter_consents():
            if consent.get("text_id") == text_id and isinstance(consent.get("agreement_id"), str):
                return consent["agreement_id"]
        raise ValueError(
            f"consent_text_id {text_id!r} is not in the CRM's consent catalogue (GET /agreements): set it to the "
            "text_id of the consent that governs calls in your CareCloud project."
        )

    def execute(self, context: Context) -> dict[str, Any]:
        with rendered_arguments():
            text_id, dispositions = self._check_rendered()
        started = datetime.now(timezone.utc).date()
        summary = WriteBackSummary(dry_run=self.is_dry_run)
        self.outcome = summary
        consent_id = self._consent_id(text_id)
        since = self._since()
        self.log.info(
            "Reading careCycle customers with doNotCall%s%s.",
            f" or a last call of {sorted(dispositions)}" if dispositions else "",
            "" if since is None else f", called on or after {since.isoformat()}",
        )
        for customer in self._candidates(since, dispositions):
            summary.candidates += 1
            crm_id = customer.get("externalId") or customer.get("clientCustomerId")
            if not isinstance(crm_id, str) or not _CRM_ID.match(crm_id):
                summary.not_from_crm += 1
                continue
            self._withdraw(crm_id, text_id, consent_id, summary)
        self.log.info(
            "Write-back%s: %d candidates, %d withdrawn, %d already withdrawn, %d not from the CRM, %d conflicts "
            "retried, %d failed.",
            " (dry run)" if summary.dry_run else "",
            summary.candidates,
            summary.withdrawn,
            summary.already_withdrawn,
            summary.not_from_crm,
            summary.conflicts_retried,
            summary.failed,
        )
        if summary.failed:
            raise AirflowException(
                f"{summary.failed} do-not-call(s) could not be written to CareCloud CRM (see the log for their "
                "externalIds); the state did not advance, so the next run tries them again."
            )
        if self.incremental and not self.is_dry_run:
            document_store(self.state_path).save(
                {"version": _STATE_VERSION, **self._state_key(), "day": started.isoformat()}
            )
            summary.watermark = started.isoformat()
        return summary.as_dict()

    def _withdraw(self, crm_id: str, text_id: str, consent_id: str, summary: WriteBackSummary) -> None:
        """Withdraw one customer's consent: read-modify-write with the conflict check, at most ``max_attempts``."""
        crm = self.carecloud_hook
        try:
            record = crm.get_customer(crm_id)
            for attempt in range(1, self.max_attempts + 1):
                if (
                    record.get("state") == STATE_DELETED
                    or _consent_value(record, text_id, consent_id) == CONSENT_WITHDRAWN
                ):
                    summary.already_withdrawn += 1
                    return
                if self.is_dry_run:
                    summary.to_withdraw.append(crm_id)
                    self.log.info("Dry run: would withdraw the consent of CRM customer %s.", crm_id)
                    return
                try:
                    self._write(crm_id, record, text_id, consent_id)
                except _Conflict as conflict:
                    summary.conflicts_retried += 1
                    self.log.info(
                        "CRM customer %s changed while being written (attempt %d of %d); reading it again.",
                        crm_id,
                        attempt,
                        self.max_attempts,
                    )
                    record = conflict.args[0]
                    continue
                summary.withdrawn += 1
                return
            summary.failed += 1
            self.log.error(
                "CRM customer %s kept changing under the write (%d attempts); its consent is not withdrawn yet.",
                crm_id,
                self.max_attempts,
            )
        except CareCloudNotFoundError:
            summary.not_from_crm += 1
        except CareCloudAuthError:
            raise  # the connection is wrong: no customer can be written
        except ApiError as err:
            summary.failed += 1
            self.log.error("CRM customer %s: the write-back failed (%s).", crm_id, type(err).__name__)

    def _write(self, crm_id: str, record: dict[str, Any], text_id: str, consent_id: str) -> None:
        """Write ``record`` back with the consent withdrawn, if it has not changed since it was read; check it.

        :raises _Conflict: (carrying the customer as now read) when it changed before the write, or the check after
            it does not find the consent withdrawn (another save put it back: read again and write again).
        """
        crm = self.carecloud_hook
        changed = _withdrawn(record, text_id, consent_id)
        current = crm.get_customer(crm_id)  # the last look before the write: did anyone change it since the read?
        if current.get("last_change") != record.get("last_change"):
            raise _Conflict(current)
        crm.put_customer(crm_id, changed)
        after = crm.get_customer(crm_id)  # the check: the CRM holds the consent withdrawn (a later save of another
        if _consent_value(after, text_id, consent_id) != CONSENT_WITHDRAWN:  # user may have changed other fields)
            raise _Conflict(after)

    def openlineage_datasets(self, outcome: Outcome | None) -> lineage.Datasets:
        """careCycle's customers read, CareCloud's customers written (counts only)."""
        counts = {} if outcome is None else outcome.as_dict()
        return (
            [
                lineage.input_dataset(
                    lineage.carecycle_namespace(self.hook.base_url), lineage.CUSTOMERS, counts.get("candidates")
                )
            ],
            [
                lineage.output_dataset(
                    lineage.carecloud_namespace(self.carecloud_hook.base_url),
                    lineage.CUSTOMERS,
                    counts.get("withdrawn"),
                )
            ],
        )


def _consent_value(customer: Mapping[str, Any], text_id: str, consent_id: str) -> Any:
    """The customer's value of the consent: from ``consents`` when present, else the deprecated ``agreement``."""
    info = customer.get("personal_information")
    info = info if isinstance(info, Mapping) else {}
    consents = info.get("consents")
    if isinstance(consents, list):
        for item in consents:
            if isinstance(item, Mapping) and item.get("consent_id") == consent_id:
                return item.get("consent_value")
        return None
    agreement = info.get("agreement")
    agreement = agreement if isinstance(agreement, Mapping) else {}
    key = next((k for k, t in AGREEMENT_KEYS.items() if t == text_id), None)
    if key is not None:
        return agreement.get(key)
    for item in agreement.get("custom_agreements") or ():
        if isinstance(item, Mapping) and item.get("agreement_id") == consent_id:
            return item.get("agreement_value")
    return None


def _withdrawn(customer: Mapping[str, Any], text_id: str, consent_id: str) -> dict[str, Any]:
    """A copy of the customer with that one consent withdrawn; everything else exactly as read."""
    changed = copy.deepcopy(dict(customer))
    info = changed.setdefault("personal_information", {})
    consents = info.get("consents")
    if isinstance(consents, list) or "agreement" not in info:
        consents = info.setdefault("consents", [])
        for item in consents:
            if isinstance(item, dict) and item.get("consent_id") == consent_id:
                item["consent_value"] = CONSENT_WITHDRAWN
                return changed
        consents.append({"consent_id": consent_id, "consent_value": CONSENT_WITHDRAWN})
        return changed
    agreement = info["agreement"]
    key = next((k for k, t in AGREEMENT_KEYS.items() if t == text_id), None)
    if key is not None:
        agreement[key] = CONSENT_WITHDRAWN
        return changed
    custom = agreement.setdefault("custom_agreements", [])
    custom[:] = [c for c in custom if not (isinstance(c, dict) and c.get("agreement_id") == consent_id)]
    custom.append({"agreement_id": consent_id, "agreement_value": CONSENT_WITHDRAWN})
    return changed


__all__ = ["CareCycleDoNotCallToCareCloudOperator", "WriteBackSummary"]
