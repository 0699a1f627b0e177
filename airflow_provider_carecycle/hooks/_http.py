"""A small, vendor-neutral HTTP sender for the provider's hooks.

:class:`HttpSender` sends one request through a :class:`~airflow_provider_carecycle.hooks.ratelimit.base.Limiter`
(what it decides, it shares with the trigger's async sender, :mod:`~airflow_provider_carecycle.hooks._async_http`,
through :class:`SenderRules`),
with a timeout, and retries it with tenacity while the error raised for the answer says it is retryable
(:attr:`~airflow_provider_carecycle.exceptions.ApiError.retryable`: 429, 5xx, no answer). It belongs to no vendor:
a hook supplies its :class:`~airflow_provider_carecycle.exceptions.ErrorFamily` (which classes to raise) and

* ``error_for(method, path, response)``: the exception for an error answer (status >= 400);
* ``no_answer(method, path, error)``: the exception for a connection error or timeout.

(:class:`~airflow_provider_carecycle.hooks._api.ApiHook` builds both for every hook from one status ladder.)

Each attempt claims a slot of the limiter before it is sent and settles it when the answer's status line arrives (or
the attempt ends without one), so the request counts from the last moment the API can have counted it. The wait
before a retry is the error's ``retry_after`` when the API gave one, otherwise exponential backoff with +-20 % jitter
(``backoff`` x 1, 2, 4, ... seconds, capped at ``max_backoff``). A rate-limit answer also pauses the shared limiter
for that wait, so every thread (and, with the host-wide or Redis backend, every process) sharing it
backs off together; a ``retry_after`` above ``max_retry_after`` is not slept but raised at once as the family's
``retry_after_too_long`` error. Each answer is also reported to the limiter (``on_success``/``on_rate_limited``)
for adaptive pacing.

Fail-closed transport rules, the same for every hook:

* a base URL with user info (``https://user:password@host``) is refused when the hook reads its connection, with a
  message that names the connection and not the URL (:func:`check_transport_settings`);
* redirects are never followed (``allow_redirects=False``): a 3xx is an error naming its status and target host,
  so the API key and request bodies reach only the configured host;
* the session ignores the environment (``trust_env=False``: no ``.netrc``, no environment proxies or CA bundle
  over the connection's); :func:`new_session` applies the environment only where the connection says nothing;
* every attempt has an overall deadline of ``timeout`` seconds for the whole body (a server that trickles bytes
  cannot hold a worker), and a body cut mid-way is a dropped connection, retried like one;
* the ``urllib3.connectionpool`` logger gets a filter that removes query strings (search terms) from its records.

``requests``, ``urllib3`` and ``tenacity`` are imported where they are used, not when this module is: a DAG file
that imports an operator pays for them only when a task sends a request.

Why one module of this size: it is the whole transport (session, proxy/TLS precedence, redirect refusal, the
deadline-bound body read and the retry loop); each piece guards the one before, so they are read together.
"""

from __future__ import annotations

import functools
import http
import http.client
import ipaddress
import logging
import os
import platform
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import SplitResult, urljoin, urlsplit

from airflow_provider_carecycle import __version__
from airflow_provider_carecycle.connection_forms import DEFAULT_MAX_RETRY_AFTER_S as _FORM_MAX_RETRY_AFTER_S
from airflow_provider_carecycle.exceptions import ApiError, ErrorFamily

if TYPE_CHECKING:
    import httpx
    import requests
    import tenacity

    from airflow_provider_carecycle.hooks.ratelimit.base import Limiter
    from airflow_provider_carecycle.progress import TaskLog

#: +-20 % around the exponential backoff step (the CareCloud best-practice guide's figure).
JITTER = 0.2
#: A claimed rate-limit slot whose attempt never reports back (the worker was killed mid-request) counts for this many
#: times ``timeout`` (connecting, then the answer), then one window more.
CLAIM_HOLD_TIMEOUTS = 2

#: an answer of either transport: a ``requests.Response`` (sync) or an ``httpx.Response`` (async), read whole; the
#: error and JSON rules below use only what both have (``status_code``, ``headers``, ``content``, ``json()``, ``url``)
Answer = Union["requests.Response", "httpx.Response"]
ErrorForResponse = Callable[[str, str, Answer], ApiError]
ErrorForNoAnswer = Callable[[str, str, Exception], ApiError]

#: Default of the ``max_retry_after`` extra: the longest ``retryAfter`` a worker sleeps through.
DEFAULT_MAX_RETRY_AFTER_S = float(_FORM_MAX_RETRY_AFTER_S)
#: Largest piece of an answer body read at once (the deadline is checked between pieces).
READ_CHUNK = 64 * 1024
#: Environment variables ``requests`` reads a CA bundle from, in its order.
CA_BUNDLE_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
#: An HTTP header value the provider sends: printable ASCII, no spaces or control characters (CR/LF).
_HEADER_SAFE = re.compile(r"^[\x21-\x7e]+$")
_QUERY = re.compile(r"\?[^\s\"']*")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@functools.cache
def user_agent() -> str:
    """The provider's ``User-Agent``: its version, ``requests``' and Python's."""
    import requests

    return (
        f"airflow-provider-carecycle/{__version__} python-requests/{requests.__version__} "
        f"python/{platform.python_version()}"
    )


@functools.cache
def broken_body_errors() -> tuple[type[Exception], ...]:
    """Errors raised while an answer's body is read that mean the connection broke (retried like no answer)."""
    import requests
    import urllib3.exceptions

    return (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ContentDecodingError,
        urllib3.exceptions.HTTPError,
        http.client.HTTPException,
        OSError,
    )


class AnswerDeadlineExceeded(TimeoutError):
    """The answer did not arrive completely within the attempt's overall deadline (an ``OSError``, like a socket
    timeout, so it is one of :func:`broken_body_errors`)."""


def describe_no_answer(error: Exception) -> str:
    """What to say about a request that got no (complete) answer: never the URL, which may hold a search term.

    :param error: the ``requests``/``urllib3`` error, or :class:`AnswerDeadlineExceeded`.
    """
    if isinstance(error, AnswerDeadlineExceeded):
        return str(error)
    return f"no answer ({type(error).__name__})"


def status_phrase(status: int) -> str:
    """The standard reason phrase of ``status`` (never the server's own, which it could fill with anything).

    :param status: an HTTP status.
    """
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown status"


def redirect_refused(where: str, response: Answer) -> str:
    """The message for a 3xx: its status and the target's host (not its path or query), and what to do.

    :param where: ``"careCycle API POST /v2/leads/upload"``.
    :param response: the 3xx response.
    """
    location = response.headers.get("Location")
    host = urlsplit(urljoin(str(response.url or ""), location)).hostname if location else None
    host = re.sub(r"[^A-Za-z0-9.:\[\]-]", "?", host or "")[:100]
    target = f"to host {host!r}" if host else "without a usable Location"
    return (
        f"{where}: the server answered {response.status_code} (redirect) {target}. Redirects are not followed, so "
        "the API key and data go only to the configured base URL: set the connection's host to the API's real "
        "address."
    )


def json_answer(response: Answer, where: str, error_class: type[ApiError]) -> Any:
    """The JSON body of a success answer; an empty or non-JSON body raises ``error_class``.

    :param response: the (status < 300) response.
    :param where: ``"careCycle API GET /v2/customers"``, for the message.
    :param error_class: the vendor's malformed-answer exception.
    """
    status = response.status_code
    if not response.content:
        raise error_class(f"{where}: answer {status} has an empty body where JSON is required.", status=status)
    try:
        return response.json()
    except ValueError:
        kind = (response.headers.get("Content-Type") or "no Content-Type").split(";")[0][:60]
        raise error_class(f"{where}: answer {status} is not JSON ({kind}).", status=status) from None


def header_safe(value: str) -> bool:
    """Whether ``value`` may be sent as an HTTP header value as is (printable ASCII, no spaces, CR or LF).

    :param value: a key or token.
    """
    return bool(_HEADER_SAFE.match(value))


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is ``localhost``, in 127.0.0.0/8 or ``::1``.

    :param host: a URL's hostname.
    """
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def as_bool(conn_id: str, name: str, value: Any) -> bool:
    """A boolean extra given as ``true``/``false`` or as text (``"true"``, ``"0"``, ...).

    :param conn_id: the connection, named in the message.
    :param name: the extra, named in the message.
    :param value: what the connection holds.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(f"Airflow connection {conn_id!r}: extra {name!r} must be true or false, got {value!r}.")


class RedactQueryFilter(logging.Filter):
    """Removes query strings from ``urllib3`` records (``"GET /v2/customers?search=Jane+Doe"`` -> ``"?<redacted>"``).

    The query of a list call can hold a search term (a patient's name or phone), and urllib3 logs every request's
    full path at DEBUG.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: drop it rather than risk showing a query
            return False
        if "?" in message:
            record.msg, record.args = _QUERY.sub("?<redacted>", message), ()
        return True


_REDACT_FILTER = RedactQueryFilter()


def install_urllib3_redaction() -> None:
    """Add :class:`RedactQueryFilter` to the ``urllib3.connectionpool`` logger (once)."""
    logger = logging.getLogger("urllib3.connectionpool")
    if _REDACT_FILTER not in logger.filters:
        logger.addFilter(_REDACT_FILTER)


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


def new_session(
    headers: Mapping[str, str], *, base_url: str, proxies: Mapping[str, str] | None, verify: bool | str
) -> requests.Session:
    """A ``requests.Session`` sending JSON ``Accept``, the provider's ``User-Agent`` and ``headers``.

    The session does not read the environment itself (``trust_env=False``): the connection's ``proxies`` are used
    as given (``{}``: no proxy); when the connection has none, the environment's ``HTTP(S)_PROXY``/``ALL_PROXY``
    with ``NO_PROXY`` for ``base_url`` are used. ``verify`` is already resolved by :func:`check_transport_settings`.

    :param headers: the vendor's own headers (auth, language).
    :param base_url: the API's base URL (for ``NO_PROXY``).
    :param proxies: ``requests`` proxies from the connection's extras, or ``None`` when it names none.
    :param verify: ``requests`` TLS verification (bool or CA bundle path).
    """
    import requests

    install_urllib3_redaction()
    session = requests.Session()
    session.trust_env = False
    session.headers.update({"Accept": "application/json", "User-Agent": user_agent(), **headers})
    session.proxies.update(resolved_proxies(base_url, proxies))
    session.verify = verify
    return session


def resolved_proxies(base_url: str, proxies: Mapping[str, str] | None) -> dict[str, str]:
    """The proxies a request to ``base_url`` goes through: the connection's as given (``{}``: none), or, when it
    names none, the environment's ``HTTP(S)_PROXY``/``ALL_PROXY`` with ``NO_PROXY`` for ``base_url`` (read by
    ``requests``' own rule, for both transports).

    :param base_url: the API's base URL.
    :param proxies: the connection's ``proxies`` extra, or ``None``.
    """
    if proxies is None:
        import requests

        proxies = requests.utils.get_environ_proxies(base_url)
    return {scheme: url for scheme, url in proxies.items() if scheme != "no"}


def check_transport_settings(conn_id: str, settings: dict[str, Any]) -> None:
    """Check a connection's transport settings, raising one clear ``ValueError`` naming the connection and the
    setting; resolve ``verify`` (``None``: the environment's CA bundle, else ``True``) in place.

    * ``timeout`` > 0, ``max_retries`` >= 0, ``requests_per_minute`` >= 1, ``max_retry_after`` >= 0;
    * ``base_url`` is ``https://``, or ``http://`` to a loopback host or with ``allow_insecure_http``, and holds no
      user info (``user:password@``), which is refused without showing the URL;
    * ``proxies`` is ``None`` or a mapping of scheme to proxy URL; ``verify`` a boolean or an existing path.

    :param conn_id: the Airflow connection, named in the message.
    :param settings: the hook's resolved settings (``verify`` and ``allow_insecure_http`` are normalized).
    """
    if (
        settings["timeout"] <= 0
        or settings["max_retries"] < 0
        or settings["requests_per_minute"] < 1
        or not settings["max_retry_after"] >= 0
    ):
        raise ValueError(
            f"Airflow connection {conn_id!r}: timeout must be > 0, max_retries >= 0, requests_per_minute >= 1 "
            "and max_retry_after >= 0."
        )
    allow_http = as_bool(conn_id, "allow_insecure_http", settings.get("allow_insecure_http") or False)
    settings["allow_insecure_http"] = allow_http
    parts = _base_url_parts(conn_id, settings["base_url"])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"Airflow connection {conn_id!r}: the host (base URL) must be an https:// URL with a host name, got a "
            f"{parts.scheme or 'schemeless'} URL."
        )
    if parts.scheme == "http" and not (allow_http or is_loopback(parts.hostname)):
        raise ValueError(
            f"Airflow connection {conn_id!r}: the host (base URL) is http://{parts.hostname}, which would send the "
            "credentials and patient data unencrypted. Use https://, or set the extra allow_insecure_http: true for "
            "a test server on a trusted network (loopback hosts are always allowed)."
        )
    proxies = settings.get("proxies")
    if proxies is not None and not (
        isinstance(proxies, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in proxies.items())
    ):
        raise ValueError(
            f"Airflow connection {conn_id!r}: extra 'proxies' must be a mapping such as "
            '{"https": "http://proxy.internal:3128"} (or {} for no proxy).'
        )
    settings["verify"] = _resolve_verify(conn_id, settings.get("verify"))


def _base_url_parts(conn_id: str, base_url: str) -> SplitResult:
    """``base_url`` split, refused (without showing it) when it holds user info or cannot be read.

    User info (``https://user:password@host``) would travel as a Basic ``Authorization`` header, and reach every
    message, log line, asset URI and lineage namespace built from the URL; an ``@`` anywhere in a base URL is either
    that or a password with an unencoded ``/``, ``?`` or ``#`` that moved the host part.

    :param conn_id: the connection, named in the message.
    :param base_url: the base URL the connection forms (host, schema, port, and the vendor's path extras).
    :raises ValueError: naming the connection, never the URL.
    """
    where = f"Airflow connection {conn_id!r}: the host (base URL)"
    if "@" in base_url:
        raise ValueError(
            f"{where} holds a user name or password ('user:password@' before the host name, or an '@' elsewhere in "
            "it; not shown here). Credentials go only in the connection's login and password fields: remove them "
            "from the host."
        )
    try:
        parts = urlsplit(base_url)
        _ = parts.port  # raises for a port that is not a number
    except ValueError:
        raise ValueError(f"{where} is not a URL that can be read (its port or brackets); it is not shown.") from None
    return parts


def url_authority(url: str) -> str:
    """``host[:port]`` of ``url``, lower case, never user info: ``https://u:p@API.x:8443/v2`` -> ``api.x:8443``.

    :param url: a base URL.
    """
    return urlsplit(url).netloc.rpartition("@")[2].lower()


def _resolve_verify(conn_id: str, verify: Any) -> bool | str:
    """The connection's ``verify`` if set (``true``/``false``/CA bundle path), else the environment's
    ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, else ``True``."""
    if verify is None or verify == "":
        return next((os.environ[name] for name in CA_BUNDLE_ENV if os.environ.get(name)), True)
    if isinstance(verify, bool):
        return verify
    if isinstance(verify, str) and verify.strip().lower() in _TRUE + _FALSE:
        return as_bool(conn_id, "verify", verify)
    if isinstance(verify, str) and os.path.exists(verify):
        return verify
    raise ValueError(
        f"Airflow connection {conn_id!r}: extra 'verify' must be true, false or the path of an existing CA bundle, "
        f"got {verify!r}."
    )


def tested_connection_message(conn_id: str, message: str) -> str:
    """A hook's error ``message`` as its ``test_connection`` reports it: ``This connection`` instead of
    ``Airflow connection '<conn_id>'``.

    Airflow's UI and REST "test connection" hand the hook a temporary random connection id (e.g. ``'DBF7J9An'``),
    which the user never saw; the connection being tested is the one on their screen.

    :param conn_id: the connection id the hook was given.
    :param message: the error message, which may name it.
    """
    return message.replace(f"Airflow connection {conn_id!r}", "This connection")


def backoff_with_jitter(attempt: int, backoff: float, max_backoff: float, rng: random.Random | None = None) -> float:
    """The wait before retry number ``attempt`` (1-based): ``backoff * 2**(attempt-1)``, capped, +-20 % jitter.

    :param attempt: how many attempts have failed so far (1 for the first retry).
    :param backoff: the first step in seconds.
    :param max_backoff: the largest step in seconds (before jitter).
    :param rng: the random source (injectable for tests).
    """
    step = min(max_backoff, backoff * 2 ** max(0, attempt - 1))
    return step * (rng or random).uniform(1 - JITTER, 1 + JITTER)


class SenderRules:
    """What both senders (:class:`HttpSender`, and the async
    :class:`~airflow_provider_carecycle.hooks._async_http.AsyncHttpSender`) decide alike: the settings, which answer
    is an error, when a 429's ``retry_after`` is too long to sleep through, which errors are retried and after how
    long, and what a retry counts and logs. Each sender only sends and waits its own way.

    :param base_url: prefix of every ``path``.
    :param timeout: seconds each attempt may take, from sending the request to the last byte of the answer.
    :param max_retries: retries after the first attempt.
    :param errors: the vendor's exception classes (its rate-limit and retry-after-too-long kinds are used here).
    :param error_for: builds the exception for an error answer (status >= 400).
    :param no_answer: builds the exception for a connection error or timeout.
    :param backoff: the first backoff step in seconds.
    :param max_backoff: the largest backoff step in seconds.
    :param log: where retries are logged (method, path, status and wait only).
    :param stats: counters to update (a fresh :class:`RequestStats` by default).
    :param max_retry_after: the longest ``retry_after`` slept through; a longer one is raised at once.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        max_retries: int,
        errors: ErrorFamily,
        error_for: ErrorForResponse,
        no_answer: ErrorForNoAnswer,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        log: TaskLog | None = None,
        stats: RequestStats | None = None,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER_S,
    ) -> None:
        if timeout <= 0 or max_retries < 0 or backoff < 0 or max_backoff < 0 or not max_retry_after >= 0:
            raise ValueError("timeout must be > 0; max_retries, backoff, max_backoff and max_retry_after must be >= 0.")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.errors = errors
        self.error_for = error_for
        self.no_answer = no_answer
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.log = log or logging.getLogger(__name__)
        self.stats = stats if stats is not None else RequestStats()
        self.max_retry_after = max_retry_after

    def _judge(self, method: str, path: str, response: Answer) -> ApiError | None:
        """Count the answer's status; ``None`` for a success (< 300), else the exception for it (what the limiter's
        feedback is given, before :meth:`_to_raise`)."""
        status = response.status_code
        self.stats.add(status=status)
        return None if status < 300 else self.error_for(method, path, response)

    def _rate_limited(self, error: ApiError) -> bool:
        return isinstance(error, self.errors.rate_limit)

    def _to_raise(self, error: ApiError) -> ApiError:
        """``error``, or the family's ``retry_after_too_long`` error when it is a 429 asking for a longer wait than
        ``max_retry_after`` (not slept through: the task fails now and Airflow's task retries take over)."""
        if self._rate_limited(error) and (error.retry_after or 0) > self.max_retry_after:
            return self.errors.retry_after_too_long(
                f"{error.message} That is more than the connection's max_retry_after ({self.max_retry_after:g} s), "
                "so the worker does not sleep through it: the task fails now and Airflow's task retries take over "
                "(give the task a retry_delay of at least that long).",
                status=error.status,
                code=error.code,
                retry_after=error.retry_after,
            )
        return error

    def _retry_wait(self, error: BaseException | None, attempt: int) -> float:
        """The wait before the retry after failed attempt number ``attempt``: the error's ``retry_after`` when the
        API gave one, else exponential backoff with jitter."""
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        return backoff_with_jitter(attempt, self.backoff, self.max_backoff)

    def _note_retry(self, error: BaseException | None, wait: float, attempt: int) -> bool:
        """Count and log a retry about to wait ``wait`` s; return whether it follows a 429 (the limiter is then
        paused for the wait, so every caller sharing it backs off together)."""
        rate_limited = isinstance(error, self.errors.rate_limit)
        self.stats.add(retries=1, rate_limited=int(rate_limited))
        self.log.info("%s Waiting %.1f s before attempt %d.", getattr(error, "message", error), wait, attempt + 1)
        return rate_limited

    def _retry_in_worker(self, error: BaseException) -> bool:
        """Whether the sender retries ``error`` itself (a retryable API error that is not left to task retries)."""
        return (
            isinstance(error, ApiError) and error.retryable and not isinstance(error, self.errors.retry_after_too_long)
        )


class HttpSender(SenderRules):
    """Send requests with a limiter, a timeout and status-aware retries (see :class:`SenderRules` for the rest).

    :param session: the ``requests.Session`` to send with (auth headers may also be passed per request).
    :param base_url: prefix of every ``path``.
    :param limiter: the rate limiter every attempt waits for.
    :param sleep: the sleep function (default ``tenacity.nap.sleep``).
    :param settings: the keyword arguments of :class:`SenderRules`.
    """

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        limiter: Limiter,
        *,
        sleep: Callable[[float], None] | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(base_url, **settings)
        self.session = session
        self.limiter = limiter
        self._sleep_fn = sleep or _tenacity_sleep

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
        """Send ``method path`` until it succeeds or retries run out; return the (status < 300) response, its body
        read completely.

        :param method: the HTTP method.
        :param path: the path under ``base_url``.
        :param params: query parameters (list values repeat the key).
        :param json: a JSON body: a value to encode, or ``bytes`` already encoded as JSON (sent as they are).
        :param headers: extra headers for this request.
        :param max_retries: retries for this request only (default: the sender's setting).
        :raises ApiError: what ``error_for``/``no_answer`` built, once retries are exhausted or at once when it is
            not retryable.
        """
        import tenacity

        retries = self.max_retries if max_retries is None else max_retries
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(retries + 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception(self._retry_in_worker),
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
        import requests

        data = None
        if isinstance(json, bytes):  # a body already encoded as JSON (no JSON value is bytes): sent as it is
            data, json, headers = json, None, {**(headers or {}), "Content-Type": "application/json"}
        slot = self.limiter.claim(CLAIM_HOLD_TIMEOUTS * self.timeout)
        self.stats.add(waited_s=slot.waited, requests=1)
        deadline = time.monotonic() + self.timeout
        try:
            response = self.session.request(
                method,
                f"{self.base_url}{path}",
                params=params,
                json=json,
                data=data,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            )
        except (requests.ConnectionError, requests.Timeout) as err:
            raise self.no_answer(method, path, err) from None
        finally:
            # the answer's status line arrived (or the attempt ended without one): the last moment careCycle can
            # have counted the request, so its slot is recorded now, not at the claim
            self.limiter.settle(slot)
        try:
            _read_body(response, deadline, self.timeout)
        except broken_body_errors() as err:
            raise self.no_answer(method, path, err) from None
        finally:
            response.close()
        error = self._judge(method, path, response)
        if error is None:
            self.limiter.on_success()
            return response
        if self._rate_limited(error):
            self.limiter.on_rate_limited(error.retry_after)
        raise self._to_raise(error)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return self._retry_wait(error, state.attempt_number)

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        if self._note_retry(error, wait, state.attempt_number):
            self.limiter.pause(wait)

    def _sleep(self, seconds: float) -> None:
        self.stats.add(waited_s=seconds)
        self._sleep_fn(seconds)


def _tenacity_sleep(seconds: float) -> None:
    """``tenacity.nap.sleep``, looked up when called (so it is imported with the first retry, not before)."""
    import tenacity

    tenacity.nap.sleep(seconds)


def _read_body(response: requests.Response, deadline: float, timeout: float) -> None:
    """Read ``response``'s whole body into ``response.content`` piece by piece, checking ``deadline`` between pieces.

    :raises AnswerDeadlineExceeded: when the body is still incomplete at ``deadline``.
    """
    raw = response.raw
    pieces: list[bytes] = []
    while True:
        if time.monotonic() > deadline:
            raise AnswerDeadlineExceeded(f"the answer did not arrive completely within {timeout:g} s")
        piece = raw.read1(READ_CHUNK, decode_content=True) if hasattr(raw, "read1") else raw.read(READ_CHUNK)
        if not piece:
            break
        pieces.append(piece)
    response._content = b"".join(pieces)
    response._content_consumed = True  # type: ignore[attr-defined]  # requests' own flag, missing from its stubs
