"""A sensor that waits for a careCycle campaign's ``customerStats`` to reach a threshold."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow_provider_carecycle import lineage
from airflow_provider_carecycle._compat import (
    AirflowException,
    AirflowFailException,
    BaseSensorOperator,
    Context,
    PokeReturnValue,
    default_deferrable,
)
from airflow_provider_carecycle.campaign_stats import TERMINAL_STATUSES, evaluate, parse_threshold, threshold_to_json
from airflow_provider_carecycle.exceptions import CareCycleNotFoundError
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
from airflow_provider_carecycle.links import CareCycleCampaignLink
from airflow_provider_carecycle.operators.base import rendered_arguments, rendered_text
from airflow_provider_carecycle.triggers.campaigns import CareCycleCampaignStatsTrigger, min_poll_interval
from airflow_provider_carecycle.vocabulary import CAMPAIGN_STATUSES


class CareCycleCampaignStatsSensor(BaseSensorOperator):
    """Wait until a campaign's ``customerStats`` meet every condition of ``threshold``.

    Each poke is one ``GET /v2/campaigns/{id}``. With ``deferrable=True`` the sensor pokes once, then hands the
    waiting to :class:`~airflow_provider_carecycle.triggers.campaigns.CareCycleCampaignStatsTrigger` and frees its
    worker slot. On success the campaign's id, name, status and flattened figures are the task's XCom value.

    .. code-block:: python

        CareCycleCampaignStatsSensor(
            task_id="wait_for_first_calls",
            campaign_id="{{ params.campaign_id }}",
            threshold={"completed_ratio": 0.8},  # or {"completed": 500}, {"pending": ("<=", 0)}
            deferrable=True,
            poke_interval=300,
            timeout=6 * 3600,
        )

    :param campaign_id: the campaign's UUID (templated).
    :param threshold: conditions that must all hold: keys ``total``, ``totalCalls``, ``todayCalls``, any
        ``statusCounts`` key (``completed``, ``pending``, ...) or ``<status>_ratio`` (that status over ``total``);
        a bare number means ``>=``, a pair ``(op, value)`` takes ``>=``, ``>``, ``<=``, ``<`` or ``==``.
    :param fail_on_terminal: fail at once when the campaign is in one of ``terminal_statuses`` without meeting the
        threshold, instead of waiting for the timeout.
    :param terminal_statuses: campaign statuses after which the figures stop moving.
    :param deferrable: wait in the triggerer instead of a worker (default ``[operators] default_deferrable``).
    :param carecycle_conn_id: the careCycle Airflow connection (templated).
    :param hook_params: extra keyword arguments for :class:`CareCycleHook`.
    """

    template_fields = ("campaign_id", "carecycle_conn_id")

    def __init__(
        self,
        *,
        campaign_id: str,
        threshold: Mapping[str, Any],
        fail_on_terminal: bool = True,
        terminal_statuses: Iterable[str] = TERMINAL_STATUSES,
        deferrable: bool | None = None,
        carecycle_conn_id: str = CareCycleHook.default_conn_name,
        hook_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # campaign_id and carecycle_conn_id are templated: checked in execute, once rendered
        self.campaign_id = campaign_id
        self.conditions = parse_threshold(threshold)
        self.threshold = threshold_to_json(self.conditions)
        self.terminal_statuses = tuple(terminal_statuses)
        unknown = [s for s in self.terminal_statuses if s not in CAMPAIGN_STATUSES]
        if unknown:
            raise ValueError(
                f"Unknown terminal_statuses {unknown}. Valid campaign statuses: {', '.join(CAMPAIGN_STATUSES)}."
            )
        self.fail_on_terminal = fail_on_terminal
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.carecycle_conn_id = carecycle_conn_id
        self.hook_params = dict(hook_params or {})

    @cached_property
    def hook(self) -> CareCycleHook:
        """The careCycle hook, built on first use (at run time, never at DAG parse time)."""
        return CareCycleHook(self.carecycle_conn_id, **self.hook_params)

    def poke(self, context: Context) -> PokeReturnValue:
        """Fetch the campaign once and check the threshold.

        :raises AirflowFailException: when the campaign does not exist, or ended without meeting the threshold
            (with ``fail_on_terminal``).
        :raises CareCycleMalformedAnswerError: (retryable: the task's retries apply) for an answer about another
            campaign, without ``customerStats`` or a figure the threshold counts, or with a count that is not a whole
            number of at least 0; never "threshold met".
        """
        try:
            campaign = self.hook.get_campaign(self.campaign_id)
        except CareCycleNotFoundError:
            raise AirflowFailException(f"careCycle campaign {self.campaign_id} was not found (404).") from None
        except ValueError as err:
            raise AirflowFailException(str(err)) from None
        result = evaluate(campaign, self.conditions, self.terminal_statuses, campaign_id=self.campaign_id)
        self.log.info("careCycle campaign %s: %s.", self.campaign_id, result.describe())
        if result.met:
            return PokeReturnValue(is_done=True, xcom_value=result.summary)
        if self.fail_on_terminal and result.terminal:
            raise AirflowFailException(
                f"careCycle campaign {self.campaign_id} ended without meeting the threshold: {result.describe()}."
            )
        return PokeReturnValue(is_done=False)

    def execute(self, context: Context) -> Any:
        """Poke (and reschedule) as any sensor, or poke once and defer to the trigger.

        :raises ValueError: when ``campaign_id`` rendered to something that is not text, or to blank text.
        """
        with rendered_arguments():
            self.campaign_id = rendered_text("campaign_id", self.campaign_id)
        CareCycleCampaignLink.persist(context, self.carecycle_conn_id, [self.campaign_id])
        if not self.deferrable:
            # BaseSensorOperator.execute itself, not through super(): Airflow 2.11's ExecutorSafeguard wrapper takes
            # a super().execute() call for a call from outside the task and logs "cannot be called outside
            # TaskInstance!" on every run (Airflow 3's wrapper tells them apart)
            sensor_execute = getattr(BaseSensorOperator.execute, "__wrapped__", BaseSensorOperator.execute)
            return sensor_execute(self, context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        self.defer(
            trigger=self._trigger(),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def _trigger(self) -> CareCycleCampaignStatsTrigger:
        """The trigger, polling no faster than one request per rate-limit slot (the first poke built the limiter)."""
        min_interval = min_poll_interval(self.hook_params, self.hook)
        return CareCycleCampaignStatsTrigger(
            campaign_id=self.campaign_id,
            threshold=self.threshold,
            end_time=time.time() + self.timeout,
            carecycle_conn_id=self.carecycle_conn_id,
            hook_params=self.hook_params,
            poll_interval=max(float(self.poke_interval), min_interval),
            fail_on_terminal=self.fail_on_terminal,
            terminal_statuses=self.terminal_statuses,
        )

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> dict[str, Any]:
        """Resume after the trigger: return the final stats, or fail with the trigger's message.

        A ``retryable`` error (no answer, 5xx or 429 once the hook's retries are spent, a connection lookup that
        failed for another reason than "not defined") raises :class:`AirflowException`, so the task's ``retries``
        apply; every other outcome (401/403, 404, a connection that is not defined, terminal, timeout) raises
        :class:`AirflowFailException` and fails the task at once.

        :param event: the trigger's event payload.
        """
        status = event.get("status")
        if status == "success":
            stats = event["stats"]
            self.log.info("careCycle campaign %s met the threshold (status=%s).", self.campaign_id, stats["status"])
            return stats
        message = event.get("message") or f"careCycle campaign {self.campaign_id}: unexpected event {status!r}."
        if status == "error" and event.get("retryable"):
            raise AirflowException(message)
        raise AirflowFailException(message)

    # -- the campaign link and OpenLineage ------------------------------------------------------------------------

    #: "careCycle campaign" in the task's UI: the campaign's page in careCycle's web app
    operator_extra_links = (CareCycleCampaignLink(),)

    def openlineage_datasets(self) -> lineage.Datasets:
        """The campaign the sensor watches, as an OpenLineage input (``carecycle://<host>`` / ``campaigns/<id>``)."""
        namespace = lineage.carecycle_namespace(self.hook.base_url)
        return [lineage.input_dataset(namespace, name) for name in lineage.campaign_names(self.campaign_id)], []

    def get_openlineage_facets_on_start(self) -> Any:
        """The campaign the sensor watches (:meth:`openlineage_datasets`)."""
        return lineage.operator_lineage(self.task_id, self.openlineage_datasets)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The same input once the sensor succeeded.

        :param task_instance: the finished task instance.
        """
        return lineage.operator_lineage(self.task_id, self.openlineage_datasets)
