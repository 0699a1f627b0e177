"""A small, vendor-neutral HTTP sender for the provider's hooks.

:class:`HttpSender` sends one request through a :class:`~airflow_provider_carecycle.hooks.rate_limit.RateLimiter`,
with a timeout, and retries it with tenacity while the error raised for the answer says it is retryable
(``CareCycleAPIError.retryable``: 429, 5xx, no answer). A hook supplies only what is vendor-specific:

* ``error_for(method, path, response)``: the exception for an error answer (status >= 400);
* ``no_answer(method, path, error)``: the exception for a connection error or timeout.

The wait before a retry is the error's ``retry_after`` when the API gave one, otherwise exponential backoff with
+-20 % jitter (``backoff`` x 1, 2, 4, ... seconds, capped at ``max_backoff``). A rate-limit answer also pauses the
shared limiter for that wait, so every thread of the process backs off together.
"""

from __future__ import annotations

import logging
import platform
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
import tenacity

from airflow_provider_carecycle import __version__
from airflow_provider_carecycle.exceptions import CareCycleAPIError, CareCycleRateLimitError
from airflow_provider_carecycle.hooks.rate_limit import RateLimiter

#: +-20 % around the exponential backoff step (the CareCloud best-practice guide's figure).
JITTER = 0.2
USER_AGENT = (
    f"airflow-provider-carecycle/{__version__} python-requests/{requests.__version__} "
    f"python/{platform.python_version()}"
)

ErrorForResponse = Callable[[str, str, requests.Response], CareCycleAPIError]
ErrorForNoAnswer = Callable[[str, str, Exception], CareCycleAPIError]


@dataclass
class RequestStats:
    """What a hook has sent so far, for operators' summaries. Safe to update from several threads."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    waited_s: float = 0.0
    by_status: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    #: called with the counts of every ``add`` (outside the lock), e.g. to send them as metrics
    listener: Callable[[Mapping[str, float]], None] | None = field(default=None, repr=False, compare=False)

    def add(self, *, status: int | None = None, **counts: float) -> None:
        """Add to the named counters (``requests=1``, ``waited_s=0.5``, ...) and count one answer ``status``.

        :param status: an HTTP status to count in ``by_status``.
        :param counts: counter name -> amount.
        """
        with self._lock:
            for name, amount in counts.items():
                setattr(self, name, getattr(self, name) + amount)
            if status is not None:
                self.by_status[status] = self.by_status.get(status, 0) + 1
        if self.listener is not None and counts:
            self.listener(counts)


def new_session(headers: Mapping[str, str], *, proxies: Mapping[str, str] | None, verify: Any) -> requests.Session:
    """A ``requests.Session`` sending JSON ``Accept``, the provider's ``User-Agent`` and ``headers``.

    :param headers: the vendor's own headers (auth, language).
    :param proxies: ``requests`` proxies, from the connection's extras.
    :param verify: ``requests`` TLS verification (bool or CA bundle path), from the connection's extras.
    """
    session = requests.Session()
    session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT, **headers})
    if proxies:
        session.proxies.update(proxies)
    session.verify = verify
    return session


def check_transport_settings(conn_id: str, settings: Mapping[str, Any]) -> None:
    """Raise one clear ``ValueError`` when a connection's ``timeout``/``max_retries``/``requests_per_minute`` is
    out of range.

    :param conn_id: the Airflow connection, named in the message.
    :param settings: the hook's resolved settings.
    """
    if settings["timeout"] <= 0 or settings["max_retries"] < 0 or settings["requests_per_minute"] < 1:
        raise ValueError(
            f"Airflow connection {conn_id!r}: timeout must be > 0, max_retries >= 0 and requests_per_minute >= 1."
        )


def backoff_with_jitter(attempt: int, backoff: float, max_backoff: float, rng: random.Random | None = None) -> float:
    """The wait before retry number ``attempt`` (1-based): ``backoff * 2**(attempt-1)``, capped, +-20 % jitter.

    :param attempt: how many attempts have failed so far (1 for the first retry).
    :param backoff: the first step in seconds.
    :param max_backoff: the largest step in seconds (before jitter).
    :param rng: the random source (injectable for tests).
    """
    step = min(max_backoff, backoff * 2 ** max(0, attempt - 1))
    return step * (rng or random).uniform(1 - JITTER, 1 + JITTER)


class HttpSender:
    """Send requests with a limiter, a timeout and status-aware retries.

    :param session: the ``requests.Session`` to send with (auth headers may also be passed per request).
    :param base_url: prefix of every ``path``.
    :param limiter: the rate limiter every attempt waits for.
    :param timeout: seconds to wait for each answer.
    :param max_retries: retries after the first attempt.
    :param error_for: builds the exception for an error answer (status >= 400).
    :param no_answer: builds the exception for a connection error or timeout.
    :param backoff: the first backoff step in seconds.
    :param max_backoff: the largest backoff step in seconds.
    :param log: where retries are logged (method, path, status and wait only).
    :param stats: counters to update (a fresh :class:`RequestStats` by default).
    :param sleep: the sleep function (injectable for tests).
    """

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        limiter: RateLimiter,
        *,
        timeout: float,
        max_retries: int,
        error_for: ErrorForResponse,
        no_answer: ErrorForNoAnswer,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        log: logging.Logger | logging.LoggerAdapter | None = None,
        stats: RequestStats | None = None,
        sleep: Callable[[float], None] = tenacity.nap.sleep,
    ) -> None:
        if timeout <= 0 or max_retries < 0 or backoff < 0 or max_backoff < 0:
            raise ValueError("timeout must be > 0; max_retries, backoff and max_backoff must be >= 0.")
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.timeout = timeout
        self.max_retries = max_retries
        self.error_for = error_for
        self.no_answer = no_answer
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.log = log or logging.getLogger(__name__)
        self.stats = stats if stats is not None else RequestStats()
        self._sleep_fn = sleep

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
    ) -> requests.Response:
        """Send ``method path`` until it succeeds or retries run out; return the (status < 400) response.

        :param method: the HTTP method.
        :param path: the path under ``base_url``.
        :param params: query parameters (list values repeat the key).
        :param json: a JSON body.
        :param headers: extra headers for this request.
        :param max_retries: retries for this request only (default: the sender's setting).
        :raises CareCycleAPIError: what ``error_for``/``no_answer`` built, once retries are exhausted or at once
            when it is not retryable.
        """
        retries = self.max_retries if max_retries is None else max_retries
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(retries + 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, CareCycleAPIError) and e.retryable),
            before_sleep=self._before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        return retrying(self._attempt, method, path, params, json, headers)

    def _attempt(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json: Any,
        headers: Mapping[str, str] | None,
    ) -> requests.Response:
        self.stats.add(waited_s=self.limiter.acquire(), requests=1)
        try:
            response = self.session.request(
                method, f"{self.base_url}{path}", params=params, json=json, headers=headers, timeout=self.timeout
            )
        except (requests.ConnectionError, requests.Timeout) as err:
            raise self.no_answer(method, path, err) from None
        status = response.status_code
        self.stats.add(status=status)
        if status < 400:
            return response
        raise self.error_for(method, path, response)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        return backoff_with_jitter(state.attempt_number, self.backoff, self.max_backoff)

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        rate_limited = isinstance(error, CareCycleRateLimitError)
        self.stats.add(retries=1, rate_limited=int(rate_limited))
        if rate_limited:
            self.limiter.pause(wait)
        self.log.info(
            "%s Waiting %.1f s before attempt %d.", getattr(error, "message", error), wait, state.attempt_number + 1
        )

    def _sleep(self, seconds: float) -> None:
        self.stats.add(waited_s=seconds)
        self._sleep_fn(seconds)
