"""What every HTTP API hook of this provider shares, so each hook is only its authentication and its endpoints.

:class:`ApiHook` reads the connection once: the extras of the hook's
:class:`~airflow_provider_carecycle.connection_forms.ConnectionForm` with their types and defaults (hook arguments
win), the transport extras ``proxies``, ``verify`` and ``allow_insecure_http``, and the base URL from
host/schema/port. It builds one session and one :class:`~airflow_provider_carecycle.hooks._http.HttpSender`, turns
every error answer into the vendor's exception through one status ladder (:func:`error_for_answer`), and decodes
JSON answers or raises. A vendor hook supplies:

* ``form`` and ``errors`` (class attributes): its connection form and its exception family, and its own
  ``get_ui_field_behaviour()`` (Airflow 2.x-3.1 read it only from the hook class itself, never inherited);
* :meth:`ApiHook._connection_settings`: credentials and the base URL from the connection;
* :meth:`ApiHook._session_headers`, :meth:`ApiHook._read_error` and :meth:`ApiHook._auth_advice`;
* a ``limiter`` property (which credentials share a rate limit).

Nothing here imports ``requests`` or ``tenacity``: they are loaded when the first request is sent.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_carecycle._compat import AirflowProviderDeprecationWarning, BaseHook, get_connection
from airflow_provider_carecycle.exceptions import ApiError, ErrorFamily
from airflow_provider_carecycle.hooks._http import (
    Answer,
    HttpSender,
    RequestStats,
    check_transport_settings,
    describe_no_answer,
    json_answer,
    new_session,
    redirect_refused,
    resolved_proxies,
    status_phrase,
    tested_connection_message,
)
from airflow_provider_carecycle.hooks.ratelimit import Limiter, limiter_for
from airflow_provider_carecycle.hooks.ratelimit.base import AsyncLimiter
from airflow_provider_carecycle.metrics import request_listener

if TYPE_CHECKING:
    import requests

    from airflow_provider_carecycle.connection_forms import ConnectionForm
    from airflow_provider_carecycle.hooks._async_http import AsyncHttpSender

#: 5xx answers worth retrying.
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
#: Extras every hook reads as given (no form field: a mapping, a bool-or-path, a bool).
TRANSPORT_EXTRAS = ("proxies", "verify", "allow_insecure_http")
_KIND_NAMES = {float: "a number", int: "an integer", str: "a text"}


@dataclass(frozen=True)
class ErrorAnswer:
    """What a vendor read from an error answer's body: PHI-free parts only.

    :param code: the API's error code (a short identifier), or ``None``.
    :param retry_after: the wait a 429 asked for, or ``None`` when it gave none.
    :param details: keyword arguments for the vendor's exception (``errors``, ``invalid_params``, ...).
    """

    code: str | None = None
    retry_after: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def error_for_answer(
    errors: ErrorFamily, where: str, response: Answer, answer: ErrorAnswer, auth_advice: str
) -> ApiError:
    """The exception for an error answer (3xx or >= 400), of the vendor's family.

    Messages carry ``where``, the status and the API's code (else the standard reason phrase, never the server's
    own), never the API's free text.

    :param errors: the vendor's exception classes.
    :param where: ``"careCycle API GET /v2/customers"``.
    :param response: the error answer.
    :param answer: what the vendor read from its body.
    :param auth_advice: what to check after a 401/403.
    """
    status = response.status_code
    if 300 <= status < 400:
        return errors.base(redirect_refused(where, response), status=status)
    said = f"{status} {answer.code or status_phrase(status)}"
    kwargs: dict[str, Any] = {"status": status, "code": answer.code, **answer.details}
    if status in (401, 403):
        return errors.auth(f"{where} was refused ({said}). {auth_advice}", **kwargs)
    if status == 404:
        return errors.not_found(f"{where}: not found ({said}).", **kwargs)
    if status == 429:
        wait = "" if answer.retry_after is None else f"; the API asked to wait {answer.retry_after:g} s"
        message = f"{where}: rate limit exceeded ({said}){wait}."
        return errors.rate_limit(message, retry_after=answer.retry_after, **kwargs)
    if status in RETRYABLE_STATUSES:
        return errors.server(f"{where}: server error ({said}).", **kwargs)
    if 400 <= status < 500:
        return errors.validation(f"{where}: request rejected ({said}).", **kwargs)
    return errors.base(f"{where}: unexpected answer ({said}).", **kwargs)


def read_extras(
    conn_id: str, conn_type: str, extras: Mapping[str, Any], form: ConnectionForm, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """The form's extras with their types and defaults (a hook argument that is not ``None`` wins), plus the
    transport extras as given.

    :param conn_id: the connection, named in messages.
    :param conn_type: its type (an ``extra__<conn_type>__<name>`` key is refused: name it ``<name>``; so is one
        with a legacy name of the form's type).
    :param extras: the connection's extra JSON.
    :param form: the connection form (names, types, defaults).
    :param overrides: hook arguments by extra name.
    :raises ValueError: for a value that is not of the extra's type, or an old prefixed key.
    """
    prefixes = tuple(f"extra__{name}__" for name in (conn_type, *form.legacy_conn_types))
    old = sorted(key for key in extras if key.startswith(prefixes))
    if old:
        name = old[0].split("__", 2)[2]
        raise ValueError(f"Airflow connection {conn_id!r}: extra {old[0]!r} is not read; name it {name!r}.")
    settings: dict[str, Any] = {}
    for name, spec in form.extras.items():
        given = overrides.get(name)
        value = extras.get(name) if given is None else given
        if value is None or value == "":
            settings[name] = spec.default if spec.default is None else spec.kind(spec.default)
            continue
        try:
            settings[name] = spec.kind(value)
        except (TypeError, ValueError):
            source = f"extra {name!r}" if given is None else f"hook argument {name!r}"
            raise ValueError(
                f"Airflow connection {conn_id!r}: {source} must be {_KIND_NAMES[spec.kind]}, got {value!r}."
            ) from None
    settings.update({name: extras.get(name) for name in TRANSPORT_EXTRAS})
    return settings


def connection_base_url(conn: Any) -> str:
    """The base URL a connection names: its host when that is a URL, else ``schema://host[:port]`` (schema default
    ``https``); ``""`` without a host.

    :param conn: the Airflow connection.
    """
    host = (conn.host or "").strip().rstrip("/")
    if host and "://" not in host:
        host = f"{conn.schema or 'https'}://{host}"
        if conn.port:
            host = f"{host}:{conn.port}"
    return host


class ApiHook(BaseHook):
    """The transport's half of a hook: settings, session, sender, error answers and JSON answers.

    :param overrides: hook arguments that win over the connection's extras (``None``: not given).
    :param retry_backoff: the first backoff step in seconds for 5xx and connection errors (doubling, at most 30 s).
    :param rate_limit_window: the rate limit's window in seconds.
    :param sleep: how the hook waits before a retry (default: tenacity's sleep); e.g. a function that records the
        waits instead of sleeping.
    """

    #: the connection form (extras with types and defaults)
    form: ClassVar[ConnectionForm]
    #: the vendor's exception classes
    errors: ClassVar[ErrorFamily]
    conn_name_attr: str

    def __init__(
        self,
        *,
        overrides: Mapping[str, Any],
        retry_backoff: float = 1.0,
        rate_limit_window: float = 60.0,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__()
        if retry_backoff < 0 or rate_limit_window <= 0:
            raise ValueError("retry_backoff must be >= 0 and rate_limit_window > 0.")
        self._overrides = dict(overrides)
        self.retry_backoff = retry_backoff
        self.rate_limit_window = rate_limit_window
        self._retry_sleep = sleep
        self.stats = RequestStats(listener=request_listener(self.conn_id))  # counters -> Airflow metrics

    @property
    def conn_id(self) -> str:
        """The Airflow connection this hook reads."""
        return getattr(self, self.conn_name_attr)

    @classmethod
    def get_connection(cls, conn_id: str) -> Any:
        """The Airflow connection ``conn_id``, read the way the running Airflow's own hooks read it, with no
        deprecation warning on any line (see :func:`airflow_provider_carecycle._compat.get_connection`).

        :param conn_id: the connection id.
        """
        return get_connection(conn_id)

    # -- vendor parts --------------------------------------------------------------------------------------------

    def _connection_settings(self, conn: Any, settings: dict[str, Any]) -> dict[str, Any]:
        """Credentials and ``base_url`` from ``conn`` (``settings`` holds the extras read so far)."""
        raise NotImplementedError

    def _session_headers(self) -> dict[str, str]:
        """Headers every request of the session carries (auth, language)."""
        return {}

    def _read_error(self, response: Any) -> ErrorAnswer:
        """The PHI-free parts of an error answer's body (an :data:`~airflow_provider_carecycle.hooks._http.Answer`
        of either transport; typed loosely so a vendor that only ever sends synchronously may name its own)."""
        return ErrorAnswer()

    def _auth_advice(self, status: int) -> str:
        """What to check after a 401/403."""
        raise NotImplementedError

    def _limiter_identity(self) -> str:
        """Who the API's rate limit belongs to (an API key, an API user); only ever hashed."""
        raise NotImplementedError

    @cached_property
    def limiter(self) -> Limiter:
        """The limiter of this base URL and :meth:`_limiter_identity` (extras ``rate_limit_backend``,
        ``rate_limit_dir``), shared by every hook of the process, the host's other processes (or every host, with
        Redis). Nothing it reads from that shared state holds a request back longer than ``max_retry_after``."""
        s = self._settings
        return limiter_for(
            s["base_url"],
            self._limiter_identity(),
            s["requests_per_minute"],
            self.rate_limit_window,
            backend=s["rate_limit_backend"],
            directory=s["rate_limit_dir"],
            max_wait_s=s["max_retry_after"],
            conn_id=self.conn_id,
        )

    # -- settings ------------------------------------------------------------------------------------------------

    @cached_property
    def _settings(self) -> dict[str, Any]:
        conn = self.get_connection(self.conn_id)
        if conn.conn_type in self.form.legacy_conn_types:
            warnings.warn(
                f"Airflow connection {self.conn_id!r} has the connection type {conn.conn_type!r}, which is deprecated "
                f"(Airflow warns about a '_' in a connection type, which is not valid in a URI scheme). Change it to "
                f"{self.form.conn_type!r} ({self.form.conn_type}:// in a URI); the old type is still read for now.",
                AirflowProviderDeprecationWarning,
                stacklevel=1,  # this line: the caller's frame is functools' cached_property
            )
        extras = conn.extra_dejson or {}
        settings = read_extras(self.conn_id, self.form.conn_type, extras, self.form, self._overrides)
        settings.update(self._connection_settings(conn, settings))
        check_transport_settings(self.conn_id, settings)
        return settings

    @property
    def base_url(self) -> str:
        """The API's base URL, from the connection."""
        return self._settings["base_url"]

    def get_conn(self) -> requests.Session:
        """The hook's ``requests.Session`` (JSON and User-Agent headers, and the vendor's own)."""
        return self._session

    @cached_property
    def _session(self) -> requests.Session:
        s = self._settings
        return new_session(self._session_headers(), base_url=s["base_url"], proxies=s["proxies"], verify=s["verify"])

    def _sender_rules(self) -> dict[str, Any]:
        """The keyword arguments both senders take (:class:`~airflow_provider_carecycle.hooks._http.SenderRules`)."""
        s = self._settings
        return {
            "timeout": s["timeout"],
            "max_retries": s["max_retries"],
            "errors": self.errors,
            "error_for": self._error_for,
            "no_answer": self._no_answer,
            "backoff": self.retry_backoff,
            "log": self.log,
            "stats": self.stats,
            "max_retry_after": s["max_retry_after"],
        }

    @cached_property
    def _sender(self) -> HttpSender:
        return HttpSender(
            self._session, self._settings["base_url"], self.limiter, sleep=self._retry_sleep, **self._sender_rules()
        )

    # -- the async transport (triggers) ---------------------------------------------------------------------------

    def prepare_async(self, wrap: Callable[[AsyncLimiter], AsyncLimiter] | None = None) -> AsyncHttpSender:
        """Read the connection, build the limiter and the TLS setting, and return the hook's
        :class:`~airflow_provider_carecycle.hooks._async_http.AsyncHttpSender` (made once).

        Everything here may block (the connection lookup, a CA bundle's loading, the limiter's state folder), so a
        trigger calls it once, off the event loop (``sync_to_async``); :meth:`arequest` then blocks nothing. No
        ``requests.Session`` is built.

        :param wrap: wraps the hook's own :attr:`limiter` in the one the sender waits for, e.g. one that spreads many
            triggers' polls over the key's budget (the same budget).
        """
        if self.__dict__.get("_async_sender") is None:
            from airflow_provider_carecycle.hooks._async_http import AsyncHttpSender, tls_context

            s = self._settings
            own = self.limiter
            if not isinstance(own, AsyncLimiter):
                raise TypeError(f"The rate limiter {type(own).__name__} has no async half (aclaim, asettle, ...).")
            tls_context(s["verify"])  # loads the CA bundle here, not on the event loop
            retry_sleep = self._retry_sleep

            async def recorded_sleep(seconds: float) -> None:
                assert retry_sleep is not None
                retry_sleep(seconds)

            self.__dict__["_async_sender"] = AsyncHttpSender(
                self._session_headers(),
                s["base_url"],
                wrap(own) if wrap is not None else own,
                proxies=resolved_proxies(s["base_url"], s["proxies"]),
                verify=s["verify"],
                sleep=recorded_sleep if retry_sleep is not None else None,
                **self._sender_rules(),
            )
        return self.__dict__["_async_sender"]

    async def arequest(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        max_retries: int | None = None,
    ) -> Any:
        """:meth:`request` on the event loop (after :meth:`prepare_async`): the decoded JSON body of a success answer.

        :param method: the HTTP method.
        :param path: the path under the base URL.
        :param params: query parameters.
        :param json: a JSON body.
        :param max_retries: retries for this request only.
        :raises RuntimeError: when :meth:`prepare_async` was not called (it must not run on the event loop).
        """
        sender = self.__dict__.get("_async_sender")
        if sender is None:
            raise RuntimeError("arequest() needs prepare_async() first, called off the event loop.")
        response = await sender.send(method, path, params=params, json=json, max_retries=max_retries)
        return self._json(response, method, path)

    # -- answers -------------------------------------------------------------------------------------------------

    def _where(self, method: str, path: str) -> str:
        return f"{self.errors.api} {method} {path}"

    def _error_for(self, method: str, path: str, response: Answer) -> ApiError:
        return error_for_answer(
            self.errors,
            self._where(method, path),
            response,
            self._read_error(response),
            self._auth_advice(response.status_code),
        )

    def _no_answer(self, method: str, path: str, error: Exception) -> ApiError:
        return self.errors.server(f"{self._where(method, path)}: {describe_no_answer(error)} from {self.base_url}.")

    def _json(self, response: Answer, method: str, path: str) -> Any:
        """The JSON body of a success answer; an empty or non-JSON body raises the family's malformed error."""
        return json_answer(response, self._where(method, path), self.errors.malformed)

    def _test_failure(self, err: Exception) -> tuple[bool, str]:
        """``test_connection``'s answer for ``err``: the message names "this connection", not Airflow's temporary
        connection id."""
        return False, tested_connection_message(self.conn_id, str(err))
