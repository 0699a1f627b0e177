"""The trigger that waits for a campaign's ``customerStats`` on behalf of the deferrable stats sensor."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from asgiref.sync import sync_to_async

from airflow_provider_carecycle._compat import (
    AirflowFailException,
    AirflowNotFoundException,
    BaseTrigger,
    TriggerEvent,
)
from airflow_provider_carecycle.campaign_stats import (
    TERMINAL_STATUSES,
    Evaluation,
    evaluate,
    parse_threshold,
    threshold_to_json,
)
from airflow_provider_carecycle.exceptions import CareCycleAPIError, CareCycleNotFoundError
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
from airflow_provider_carecycle.hooks.ratelimit.base import AsyncLimiter
from airflow_provider_carecycle.triggers.pacing import KeyPacer, PacedLimiter, pacer_for
from airflow_provider_carecycle.vocabulary import DEFAULT_REQUESTS_PER_MINUTE

#: seconds after which an unchanged poll is said at INFO again (a sign of life in the task's log)
UNCHANGED_INFO_EVERY_S = 600.0


def min_poll_interval(hook_params: Mapping[str, Any], hook: CareCycleHook | None = None) -> float:
    """The shortest poll interval that stays within the rate limit at one request per poll: the rate limit's
    window over its requests. The one rule of the stats sensor and its trigger.

    With ``hook`` (a hook that has already sent a request, so its connection is read and its limiter built), the
    limiter's rate counts, which includes the connection's ``requests_per_minute`` extra. Without one (before any
    request, e.g. in the triggerer's event loop, where no connection may be looked up), ``hook_params`` alone
    decide, defaulting to the API's documented 60 requests a minute.

    :param hook_params: the hook's keyword arguments (``requests_per_minute``, ``rate_limit_window``).
    :param hook: the hook built from them, once it has a limiter.
    """
    if hook is not None:
        return float(hook.rate_limit_window) / float(hook.limiter.limit)
    window = float(hook_params.get("rate_limit_window", 60.0))
    return window / float(hook_params.get("requests_per_minute") or DEFAULT_REQUESTS_PER_MINUTE)


class CareCycleCampaignStatsTrigger(BaseTrigger):
    """Poll one campaign's ``customerStats`` until a threshold holds, the campaign ends, or ``end_time`` passes.

    Each poll is one ``GET /v2/campaigns/{id}`` through the hook's async transport: the HTTP exchange, the wait for
    the key's budget, the backoff and a 429's ``retryAfter`` all wait on the event loop, so a poll never holds one of
    the triggerer's threads (other triggers need them). The hook is made ready once per trigger, before the first
    poll, in ``sync_to_async`` (see :meth:`_ready_hook`): the connection lookup talks to the triggerer's supervisor,
    which a plain thread must not. Every trigger of the triggerer on one key takes its turn at the key's
    :class:`~airflow_provider_carecycle.triggers.pacing.KeyPacer`, so polls are spread over the key's budget and no
    sensor starves; when the sensors outnumber the budget, their poll intervals stretch to it.
    Events: ``{"status": "success", "stats": ...}``,
    ``{"status": "terminal", "stats": ..., "message": ...}``, ``{"status": "timeout", "stats": ..., "message": ...}``
    and ``{"status": "error", "message": ..., "retryable": bool}``. ``stats`` is the campaign's id, name, status
    and flattened figures.

    :param campaign_id: the campaign's UUID.
    :param threshold: the conditions, as accepted by :func:`~airflow_provider_carecycle.campaign_stats.parse_threshold`.
    :param carecycle_conn_id: the careCycle Airflow connection.
    :param hook_params: extra keyword arguments for :class:`CareCycleHook`.
    :param poll_interval: seconds between polls; raised to the rate limit's minimum (see :func:`min_poll_interval`).
    :param end_time: the epoch second after which the trigger reports a timeout.
    :param fail_on_terminal: report ``terminal`` as soon as the campaign is in a terminal status without meeting
        the threshold.
    :param terminal_statuses: the campaign statuses treated as terminal.
    """

    def __init__(
        self,
        *,
        campaign_id: str,
        threshold: Mapping[str, Any],
        end_time: float,
        carecycle_conn_id: str = CareCycleHook.default_conn_name,
        hook_params: Mapping[str, Any] | None = None,
        poll_interval: float = 60.0,
        fail_on_terminal: bool = True,
        terminal_statuses: tuple[str, ...] | list[str] = TERMINAL_STATUSES,
    ) -> None:
        super().__init__()
        self.campaign_id = campaign_id
        self.conditions = parse_threshold(threshold)
        self.end_time = float(end_time)
        self.carecycle_conn_id = carecycle_conn_id
        self.hook_params = dict(hook_params or {})
        self.poll_interval = max(float(poll_interval), min_poll_interval(self.hook_params))
        self.fail_on_terminal = bool(fail_on_terminal)
        self.terminal_statuses = tuple(terminal_statuses)
        self._hook: CareCycleHook | None = None
        self._pacer: KeyPacer | None = None
        self._last_said: tuple[str, float] | None = None  # the last poll said at INFO: (its account, when)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The classpath and JSON-friendly keyword arguments."""
        return (
            "airflow_provider_carecycle.triggers.campaigns.CareCycleCampaignStatsTrigger",
            {
                "campaign_id": self.campaign_id,
                "threshold": threshold_to_json(self.conditions),
                "end_time": self.end_time,
                "carecycle_conn_id": self.carecycle_conn_id,
                "hook_params": self.hook_params,
                "poll_interval": self.poll_interval,
                "fail_on_terminal": self.fail_on_terminal,
                "terminal_statuses": list(self.terminal_statuses),
            },
        )

    async def _ready_hook(self) -> CareCycleHook:
        """The hook, its connection read, its key masked and its session built (once).

        On Airflow 3 reading the connection and masking the key are messages to the triggerer's supervisor. Airflow
        3.0 and 3.1 allow those only from the triggerer's event loop or from a thread of asgiref's ``sync_to_async``,
        which hands each message back to the loop; from any other thread the replies get out of order and the
        triggerer's trigger runner dies, taking every deferred task with it. Airflow's providers read a trigger's
        connection with ``BaseHook.aget_connection`` where the line has it (3.1+) and with
        ``sync_to_async(BaseHook.get_connection)`` otherwise; this step also masks the key (another message), so it
        runs whole in ``sync_to_async``, the one way that is safe on every line, once per trigger instance: the same
        step builds everything else that may block (the limiter's state folder, the CA bundle), so :meth:`_poll`
        blocks nothing on the loop.
        """
        if self._hook is None:
            self._hook = await sync_to_async(self._new_hook)(asyncio.get_running_loop())
        return self._hook

    def _new_hook(self, loop: asyncio.AbstractEventLoop) -> CareCycleHook:
        hook = CareCycleHook(self.carecycle_conn_id, **self.hook_params)
        # reads the connection (masking its key), checks its settings and builds the async sender, whose claims take
        # their turn at the key's pacer on the triggerer's loop
        hook.prepare_async(wrap=lambda limiter: self._paced(limiter, loop))
        return hook

    def _paced(self, limiter: AsyncLimiter, loop: asyncio.AbstractEventLoop) -> AsyncLimiter:
        self._pacer = pacer_for(limiter, loop)
        return PacedLimiter(self._pacer)

    async def _poll(self) -> Evaluation:
        """One request for the campaign, and the threshold checked on it, on the event loop, with the hook
        :meth:`_ready_hook` made: nothing here talks to the triggerer's supervisor or blocks the loop."""
        if self._hook is None:
            raise RuntimeError("_poll() needs the hook of _ready_hook() (it must not read the connection itself).")
        campaign = await self._hook.aget_campaign(self.campaign_id)
        # a malformed answer raises CareCycleMalformedAnswerError: a retryable error event, never "success"
        return evaluate(campaign, self.conditions, self.terminal_statuses, campaign_id=self.campaign_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until there is something to report, then yield one event."""
        try:
            while True:
                try:
                    await self._ready_hook()
                    if self._pacer is not None:
                        self._pacer.join(self, self.poll_interval)
                    result = await self._poll()
                except CareCycleNotFoundError:
                    yield TriggerEvent(
                        error_event(f"careCycle campaign {self.campaign_id} was not found (404).", False)
                    )
                    return
                except Exception as err:
                    retryable = is_retryable(err)
                    if not isinstance(err, CareCycleAPIError):
                        # not an API answer (a connection lookup, a secrets backend, ...): keep the traceback here
                        self.log.warning(
                            "Polling careCycle campaign %s failed (%s).",
                            self.campaign_id,
                            type(err).__name__,
                            exc_info=True,
                        )
                    yield TriggerEvent(error_event(self._failure_message(err, retryable), retryable))
                    return
                event = self._event_for(result)
                if event is not None:
                    yield TriggerEvent(event)
                    return
                delay = self._next_delay()
                expected = self._pacer.interval(delay) if self._pacer is not None else delay
                account = result.describe()
                self.log.log(
                    self._level_for(account),
                    "careCycle campaign %s: %s. Next poll in about %.3g s.",
                    self.campaign_id,
                    account,
                    expected,
                )
                # its own interval, then its turn on the key (where the budget stretches it, if it must)
                await asyncio.sleep(delay)
        finally:
            if self._pacer is not None:
                self._pacer.leave(self)

    def _level_for(self, account: str) -> int:
        """INFO for a poll whose account differs from the last one said at INFO (the first poll's included) or
        when that one is ``UNCHANGED_INFO_EVERY_S`` old, DEBUG otherwise: the task's log shows every change, and
        hundreds of sensors waiting on quiet campaigns do not flood the triggerer with one line per poll (Airflow 3
        writes each trigger's lines through the triggerer's supervisor, and a triggerer whose log pipe is full
        stalls its event loop).

        :param account: this poll's :meth:`~airflow_provider_carecycle.campaign_stats.Evaluation.describe`.
        """
        now = time.monotonic()
        if self._last_said is not None and self._last_said[0] == account:
            if now - self._last_said[1] < UNCHANGED_INFO_EVERY_S:
                return logging.DEBUG
        self._last_said = (account, now)
        return logging.INFO

    def _failure_message(self, err: Exception, retryable: bool) -> str:
        """The error event's message: what failed, and whether a task retry may help.

        :param err: what the poll raised.
        :param retryable: what :func:`is_retryable` said about it.
        """
        what = str(err) if isinstance(err, CareCycleAPIError) else f"{type(err).__name__}: {err}"
        what = what.rstrip(". ")
        if isinstance(err, AirflowNotFoundException):
            what = f"{what} (the Airflow connection {self.carecycle_conn_id!r} is not defined)"
        hint = " The task's retries apply." if retryable else ""
        return f"Polling careCycle campaign {self.campaign_id} failed: {what}.{hint}"

    def _next_delay(self) -> float:
        """Seconds until the next poll.

        The poll interval, shortened so the wait ends at ``end_time``, but never below the rate limit's minimum (so
        the last poll may come up to that minimum after ``end_time``). The minimum is the hook's, connection extras
        included (see :func:`min_poll_interval`): it runs after a poll, so the hook has read its connection.
        """
        remaining = self.end_time - time.time()
        return max(min(self.poll_interval, remaining), min_poll_interval(self.hook_params, self._hook))

    def _event_for(self, result: Evaluation) -> dict[str, Any] | None:
        """The event a poll's result calls for, or ``None`` to keep waiting."""
        if result.met:
            return {"status": "success", "stats": result.summary}
        if self.fail_on_terminal and result.terminal:
            return {
                "status": "terminal",
                "stats": result.summary,
                "message": f"careCycle campaign {self.campaign_id} ended without meeting the threshold: "
                f"{result.describe()}.",
            }
        if time.time() >= self.end_time:
            return {
                "status": "timeout",
                "stats": result.summary,
                "message": f"careCycle campaign {self.campaign_id}: threshold not met before the sensor's "
                f"timeout: {result.describe()}.",
            }
        return None


def is_retryable(err: BaseException) -> bool:
    """Whether a task retry may succeed after the trigger's poll raised ``err``.

    API answers say so themselves (:attr:`CareCycleAPIError.retryable`: yes for no answer, 5xx and 429 once the
    hook's own retries are spent; no for 401/403, 404 and rejected requests). A connection that is not defined, a
    refused secrets lookup (``PermissionError``), an invalid setting (``ValueError``) and an explicit
    ``AirflowFailException`` are not retryable either. Anything else (a secrets backend that did not answer, a
    dropped connection lookup, an OS error) is taken as transient.

    :param err: the exception the poll raised.
    """
    if isinstance(err, CareCycleAPIError):
        return err.retryable
    return not isinstance(err, (AirflowNotFoundException, AirflowFailException, PermissionError, ValueError))


def error_event(message: str, retryable: bool) -> dict[str, Any]:
    """An ``error`` event payload.

    :param message: what went wrong (no record contents).
    :param retryable: whether a task retry may succeed.
    """
    return {"status": "error", "message": message, "retryable": retryable}
