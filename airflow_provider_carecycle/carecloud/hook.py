"""The CareCloud CRM hook: bearer-token login, retries, rate limiting and ``count``/``offset`` paging.

CareCloud CRM (crmcarecloud.com) is the loyalty CRM a CRM-to-careCycle lead feed reads customers from. Its REST API
lives at ``https://{project_domain}/webservice/rest-api/{interface}/{version}``; this hook uses the enterprise
interface. Facts it relies on (vendor docs, see ``docs/connections-carecloud.md``):

* ``POST /users/actions/login`` with ``user_external_application_id``/``login``/``password`` returns
  ``{"data": {"bearer_token", "valid_to", ...}}``; ``valid_to`` is project-local time without an offset. Tokens last
  about 7 hours by default; on 401 the client logs in again and retries once.
* ``GET /customers`` answers ``{"data": {"customers": [...], "total_items": N}}`` and pages by ``count``/``offset``.
* ``GET /agreements`` (the consent catalogue) and ``GET /communication-channels`` page the same way;
  ``PUT /customers/{customer_id}`` replaces the whole customer and answers 204.
* Errors are ``{"error": {"exception", "title", "detail", "error_data": {"invalid_params": [...]}}}``.
* 429 and 503 come without a documented wait: back off exponentially with jitter. No numeric rate limit is
  published, so the client-side limit is a connection extra.

Its error family is in :mod:`~airflow_provider_carecycle.carecloud.exceptions`, the ``GET /customers`` query
parameters in :mod:`~airflow_provider_carecycle.carecloud.params`.

Why one module of this size: the CRM's login, its token cache and its customer paging share the token state and
its lock (a 401 on a page logs in again and retries that page), so they stay one class.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone, tzinfo
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from airflow_provider_carecycle._compat import AirflowNotFoundException, mask_secret
from airflow_provider_carecycle.carecloud.exceptions import (
    CARECLOUD_ERRORS,
    CareCloudAuthError,
    CareCloudMalformedAnswerError,
)
from airflow_provider_carecycle.carecloud.local_time import (
    as_instant,
    as_local_aware,
    earliest_instant,
    earliest_wall,
    wall_time,
)
from airflow_provider_carecycle.carecloud.params import _list_chunks, _sort_params, build_customer_params
from airflow_provider_carecycle.connection_forms import CARECLOUD_CRM_DEFAULT_CONN_ID, CARECLOUD_CRM_FORM
from airflow_provider_carecycle.exceptions import ApiError, api_token
from airflow_provider_carecycle.hooks._api import ApiHook, ErrorAnswer, connection_base_url
from airflow_provider_carecycle.hooks._http import header_safe

if TYPE_CHECKING:
    import requests

API_ROOT = "/webservice/rest-api"
DEFAULT_INTERFACE = "enterprise-interface"
DEFAULT_VERSION = "v1.0"
DEFAULT_PAGE_SIZE = 100
#: the consent catalogue's path (the spec's ``/agreements``; CareCloud's docs call the resource "consents")
CONSENTS_PATH = "/agreements"
#: Used when the project's time zone is unknown, so ``valid_to`` cannot be read exactly (7 h default minus 30 min).
FALLBACK_TOKEN_TTL_S = 6.5 * 3600

#: Connection extras the hook reads, with their types and defaults: a view of the connection form.
EXTRA_FIELDS = CARECLOUD_CRM_FORM.extras


# ------------------------------------------------------------------------------------------- value helpers


@dataclass
class CustomerPage:
    """One page of ``GET /customers``: its items, the ``offset`` it was asked for and ``total_items``."""

    items: list[dict[str, Any]]
    offset: int
    total_items: int | None


class ChangedCustomer(NamedTuple):
    """A customer an incremental read selected, with its ``last_change`` read once: the earliest UTC instant its
    project-local wall time can name (see :mod:`~airflow_provider_carecycle.carecloud.local_time`)."""

    customer: dict[str, Any]
    changed: datetime


@dataclass
class ChangedRead:
    """What an incremental read of changed customers saw (filled in as the rows are read), for a watermark.

    A watermark built from it never passes a change the read may have missed: not ``newest`` (the newest row read),
    not ``floor`` (set when rows moved while the read paged), not ``started_at`` (the read's own start, whatever
    ``last_change`` a row carries).

    :param started_at: when the read began (UTC), before its first request.
    """

    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    #: the earliest instant the newest row read can name (UTC), or ``None`` before one is read
    newest: datetime | None = None
    #: a row changed at or after this instant (UTC) may have been skipped while paging (``None``: none was)
    floor: datetime | None = None
    #: how many times the rows moved under the read (a page boundary that did not line up)
    drifts: int = 0
    scanned: int = 0
    selected: int = 0
    unreadable: int = 0

    def watermark(self, previous: datetime | None = None) -> datetime | None:
        """The highest watermark this read vouches for: every change at or after it is left for the next read.

        :param previous: the watermark the read started from (kept when nothing newer was read).
        """
        marks = [m for m in (previous, self.newest) if m is not None]
        if not marks:
            return None
        return min(m for m in (max(marks), self.floor, self.started_at) if m is not None)


def parse_carecloud_datetime(value: Any, tz: tzinfo) -> datetime | None:
    """A CareCloud ``YYYY-MM-DD HH:MM:SS`` (project-local, no offset) as an aware datetime; ``None`` if unreadable.

    A wall time that names two instants (the repeated hour of a DST fall-back) or none (the gap of a spring-forward)
    is read as the earliest instant it can name (see :mod:`~airflow_provider_carecycle.carecloud.local_time`).

    :param value: the text from the API.
    :param tz: the project's time zone.
    """
    wall = wall_time(value)
    return None if wall is None else as_local_aware(wall, tz)


def _positive_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def _customer_path_id(customer_id: Any) -> str:
    """A customer id checked to be safe in a path (letters, digits, - and _).

    :raises ValueError: otherwise.
    """
    if not isinstance(customer_id, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", customer_id):
        raise ValueError(f"customer_id must be a CareCloud id (letters, digits, - and _), got {customer_id!r}.")
    return customer_id


# ------------------------------------------------------------------------------------------------------ hook


class CareCloudCrmHook(ApiHook):
    """Talks to the CareCloud CRM REST API (enterprise interface).

    Connection: ``host`` is the project domain (``myproject.crmcarecloud.com``) or a full base URL; ``login`` and
    ``password`` are the API user's; extras ``user_external_application_id`` (required), ``interface``
    (``enterprise-interface``), ``version`` (``v1.0``), ``accept_language``, ``project_timezone`` (IANA name of
    the project's time zone, used for ``valid_to`` and ``last_change``; default ``UTC``), ``timeout``,
    ``max_retries``, ``requests_per_minute`` (default 300), ``rate_limit_backend`` and ``rate_limit_dir`` (where the
    limit is shared: host-wide by default, or in Redis; see ``docs/rate-limits-and-errors.md``). The bearer token
    is cached until shortly before it expires and renewed once on a 401. Settings, session, retries and error
    answers are the transport's (:class:`~airflow_provider_carecycle.hooks._api.ApiHook`); this class is the login
    and the endpoints.

    :param carecloud_crm_conn_id: the Airflow connection to use.
    :param timeout: seconds to wait for each answer (overrides the connection extra).
    :param max_retries: retries after the first attempt on 429/5xx/no answer (overrides the extra).
    :param requests_per_minute: client-side rate limit (overrides the extra).
    :param accept_language: ``Accept-Language`` header, e.g. ``"en"`` (overrides the extra).
    :param retry_backoff: the first backoff step in seconds (doubling, +-20 % jitter, at most 30 s).
    :param rate_limit_window: the limiter's window in seconds.
    :param token_refresh_margin_s: renew the token this many seconds before ``valid_to``.
    """

    conn_name_attr = "carecloud_crm_conn_id"
    default_conn_name = CARECLOUD_CRM_DEFAULT_CONN_ID
    conn_type = CARECLOUD_CRM_FORM.conn_type
    hook_name = CARECLOUD_CRM_FORM.hook_name
    form = CARECLOUD_CRM_FORM
    errors = CARECLOUD_ERRORS

    def __init__(
        self,
        carecloud_crm_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        requests_per_minute: int | None = None,
        accept_language: str | None = None,
        retry_backoff: float = 1.0,
        rate_limit_window: float = 60.0,
        token_refresh_margin_s: float = 60.0,
    ) -> None:
        if retry_backoff < 0 or rate_limit_window <= 0 or token_refresh_margin_s < 0:
            raise ValueError("retry_backoff and token_refresh_margin_s must be >= 0 and rate_limit_window > 0.")
        self.carecloud_crm_conn_id = carecloud_crm_conn_id
        super().__init__(
            overrides={
                "timeout": timeout,
                "max_retries": max_retries,
                "requests_per_minute": requests_per_minute,
                "accept_language": accept_language,
            },
            retry_backoff=retry_backoff,
            rate_limit_window=rate_limit_window,
        )
        self.token_refresh_margin_s = token_refresh_margin_s
        self.logins = 0
        self._token: str | None = None
        self._token_expires_at = 0.0  # time.monotonic()
        self._token_lock = threading.Lock()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form for Airflow 2.x-3.1 (3.2+ reads the same from provider info). Airflow reads it only
        from the hook class's own ``__dict__``, so each hook defines it rather than inheriting it."""
        return cls.form.ui_field_behaviour()

    # -- settings ------------------------------------------------------------------------------------------------

    def _connection_settings(self, conn: Any, settings: dict[str, Any]) -> dict[str, Any]:
        login, password = (conn.login or "").strip(), conn.password or ""
        missing = [
            label
            for label, value in (
                ("login", login),
                ("password", password),
                ("extra user_external_application_id", settings["user_external_application_id"]),
            )
            if not value
        ]
        if missing or not (conn.host or "").strip():
            raise CareCloudAuthError(
                f"Airflow connection {self.carecloud_crm_conn_id!r} lacks {', '.join(missing or ['host'])}: "
                "a CareCloud connection needs host (project domain), login, password and the extra "
                "user_external_application_id."
            )
        mask_secret(password)
        language = settings["accept_language"]
        if language and not re.fullmatch(r"[A-Za-z0-9,;=.*\- ]{1,100}", language):
            raise ValueError(
                f"Airflow connection {self.carecloud_crm_conn_id!r}: extra 'accept_language' must be a language "
                "list such as 'en' or 'cs, en;q=0.8'."
            )
        try:
            tz = ZoneInfo(settings["project_timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"Airflow connection {self.carecloud_crm_conn_id!r}: project_timezone "
                f"{settings['project_timezone']!r} is not an IANA time zone such as 'Europe/Prague'."
            ) from None
        base_url = self._base_url(connection_base_url(conn), settings["interface"], settings["version"])
        return {"login": login, "password": password, "tz": tz, "base_url": base_url}

    @staticmethod
    def _base_url(host: str, interface: str, version: str) -> str:
        """``https://{domain}/webservice/rest-api/{interface}/{version}`` from a domain or a (partial) base URL."""
        if API_ROOT in host:
            root, _, rest = host.partition(API_ROOT)
            return f"{root}{API_ROOT}{rest}" if rest.strip("/") else f"{root}{API_ROOT}/{interface}/{version}"
        return f"{host}{API_ROOT}/{interface}/{version}"

    @property
    def base_url(self) -> str:
        """The API's base URL, e.g. ``https://x.crmcarecloud.com/webservice/rest-api/enterprise-interface/v1.0``."""
        return self._settings["base_url"]

    @property
    def project_tz(self) -> ZoneInfo:
        """The project's time zone (``project_timezone`` extra), in which CareCloud writes its datetimes."""
        return self._settings["tz"]

    def _limiter_identity(self) -> str:
        """CareCloud's limit belongs to the API user (login and application id)."""
        s = self._settings
        return f"{s['login']}|{s['user_external_application_id']}"

    def _session_headers(self) -> dict[str, str]:
        language = self._settings["accept_language"]
        return {"Accept-Language": language} if language else {}

    def _auth_advice(self, status: int) -> str:
        if status == 403:
            return (
                "This user or interface may not use it: check the connection's 'interface' extra (usually "
                f"{DEFAULT_INTERFACE!r}) and the API user's rights."
            )
        return (
            "Check the login, password and user_external_application_id of the Airflow connection; the API user "
            "must be in the 'webservice' user group."
        )

    def _read_error(self, response: requests.Response) -> ErrorAnswer:
        """The ``exception`` name and each invalid parameter's ``name`` and ``reason`` of an ``{"error": {...}}``
        body; the free-text ``title``, ``detail`` and ``message`` may echo a value and are dropped."""
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        error_data = error.get("error_data")
        error_data = error_data if isinstance(error_data, dict) else {}
        raw_params = error_data.get("invalid_params")
        raw_params = raw_params if isinstance(raw_params, list) else []
        invalid_params = [
            {key: api_token(p.get(key)) for key in ("name", "reason") if api_token(p.get(key))}
            for p in raw_params
            if isinstance(p, dict)
        ]
        return ErrorAnswer(code=api_token(error.get("exception")), details={"invalid_params": invalid_params})

    # -- authentication ------------------------------------------------------------------------------------------

    def _login(self) -> None:
        """``POST /users/actions/login``; cache the token until ``valid_to`` minus the margin."""
        s = self._settings
        body = {
            "user_external_application_id": s["user_external_application_id"],
            "login": s["login"],
            "password": s["password"],
        }
        started = time.monotonic()
        response = self._sender.send("POST", "/users/actions/login", json=body)
        body = self._json(response, "POST", "/users/actions/login")
        data = body.get("data") if isinstance(body, dict) else None
        data = data if isinstance(data, dict) else {}
        token = data.get("bearer_token")
        if not isinstance(token, str) or not token:
            raise CareCloudAuthError("CareCloud API POST /users/actions/login answered without a bearer_token.")
        mask_secret(token)
        if not header_safe(token):
            raise CareCloudAuthError(
                "CareCloud API POST /users/actions/login answered a bearer_token with characters an HTTP header "
                "cannot carry (a line break, a space, a control or non-ASCII character); it is not used."
            )
        self.logins += 1
        self._token = token
        self._token_expires_at = started + self._token_lifetime(data.get("valid_to"))
        self.log.info("Logged in to CareCloud CRM at %s.", s["base_url"])

    def _token_lifetime(self, valid_to: Any) -> float:
        """Seconds the token may be used: ``valid_to`` (project-local) minus now and the margin, else a fallback."""
        expires = parse_carecloud_datetime(valid_to, self.project_tz)
        if expires is None:
            return FALLBACK_TOKEN_TTL_S - self.token_refresh_margin_s
        return max(0.0, (expires - datetime.now(timezone.utc)).total_seconds() - self.token_refresh_margin_s)

    def _bearer(self, stale: str | None = None) -> str:
        """A valid token: the cached one, or a new login (also when the cached one is ``stale``, i.e. got a 401)."""
        with self._token_lock:
            if self._token is None or self._token == stale or time.monotonic() >= self._token_expires_at:
                self._login()
            assert self._token is not None
            return self._token

    # -- requests ------------------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        max_retries: int | None = None,
    ) -> Any:
        """Send one authenticated request (rate limited, retried); return the decoded JSON body.

        On a 401 the hook logs in again and retries once; a second 401 raises :class:`CareCloudAuthError`.

        :param method: the HTTP method.
        :param path: the path under the base URL, e.g. ``/customers``.
        :param params: query parameters (list values repeat the key, e.g. ``{"customer_ids[]": [...]}``).
        :param json: a JSON body.
        :param max_retries: retries for this request only (default: the connection's setting).
        :raises CareCloudAPIError: (a subclass of) for an error answer, or when retries are exhausted.
        """
        response = self._send(method, path, params=params, json=json, max_retries=max_retries)
        return self._json(response, method, path)

    def _send(self, method: str, path: str, **send: Any) -> requests.Response:
        """Send one authenticated request (see :meth:`request`, whose ``params``, ``json`` and ``max_retries`` it
        takes); return the success answer as received."""
        token = self._bearer()
        try:
            return self._sender.send(method, path, headers={"Authorization": f"Bearer {token}"}, **send)
        except CareCloudAuthError as err:
            if err.status != 401:
                raise
            self.log.info("CareCloud API %s %s answered 401; logging in again and retrying once.", method, path)
            token = self._bearer(stale=token)
            return self._sender.send(method, path, headers={"Authorization": f"Bearer {token}"}, **send)

    # -- paging --------------------------------------------------------------------------------------------------

    def paginate(
        self, path: str, params: Mapping[str, Any] | None = None, *, items_key: str, count: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[CustomerPage]:
        """Yield the pages of a ``count``/``offset`` list lazily, one request per page.

        Stops on an empty page, or on a short page (fewer than ``count`` items) once ``offset`` reached
        ``total_items`` (or without ``total_items``): a ``total_items`` lower than the real list does not cut it
        short, and one that disagrees with what was paged is logged as a warning. ``offset`` grows with every page,
        so it can never loop.

        :param path: the list's path, e.g. ``/customers``.
        :param params: query parameters other than ``count``/``offset``.
        :param items_key: the list's key inside ``data`` (``"customers"``).
        :param count: page size (>= 1).
        :raises CareCloudMalformedAnswerError: for an answer without a ``data.<items_key>`` list of objects, or
            with a ``total_items`` that is not an integer.
        """
        count = _positive_int("count", count, 1)
        offset = 0
        while True:
            page = self._page(path, params, items_key, count, offset)
            yield page
            offset += len(page.items)
            total = page.total_items
            if not page.items or (len(page.items) < count and (total is None or offset >= total)):
                break
        if total is not None and total != offset:
            self.log.warning("CareCloud API GET %s: total_items said %d, %d were paged.", path, total, offset)

    def _page(
        self, path: str, params: Mapping[str, Any] | None, items_key: str, count: int, offset: int
    ) -> CustomerPage:
        """One page of a ``count``/``offset`` list, its shape checked.

        :raises CareCloudMalformedAnswerError: see :meth:`paginate`.
        """
        body = self.request("GET", path, params={**(params or {}), "count": count, "offset": offset})
        where = f"CareCloud API GET {path} offset {offset}"
        data = body.get("data") if isinstance(body, dict) else None
        data = data if isinstance(data, dict) else {}
        items = data.get(items_key)
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise CareCloudMalformedAnswerError(f"{where}: the answer has no 'data.{items_key}' list.", status=200)
        total = data.get("total_items")
        if total is not None and (isinstance(total, bool) or not isinstance(total, int)):
            raise CareCloudMalformedAnswerError(f"{where}: 'total_items' is not an integer.", status=200)
        return CustomerPage(items=items, offset=offset, total_items=total)

    # -- public API ----------------------------------------------------------------------------------------------

    def iter_customers(
        self,
        *,
        email: str | None = None,
        phone: str | int | None = None,
        customer_source_id: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        birthdate: str | date | None = None,
        email_list: Sequence[str] | None = None,
        customer_ids: Sequence[str] | None = None,
        sort_field: str | None = None,
        sort_direction: str | None = None,
        count: int = DEFAULT_PAGE_SIZE,
        extra_params: Mapping[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield every customer matching the filters (AND between filters, OR within a list), page by page.

        ``email_list``/``customer_ids`` longer than the API's 1,000-item limit are split into several queries;
        an empty list matches nobody (no request is sent).

        :param email: exact email.
        :param phone: phone with the international prefix (``12025550143``; ``+``, spaces and dashes are removed).
        :param customer_source_id: the customer source's id.
        :param first_name: first name.
        :param last_name: last name.
        :param birthdate: a date, ``YYYY-MM-DD`` or ``DD.MM.YYYY``.
        :param email_list: several emails (sent as ``email_list[]``).
        :param customer_ids: several customer ids (sent as ``customer_ids[]``).
        :param sort_field: a first-level customer field, e.g. ``last_change``.
        :param sort_direction: ``ASC`` or ``DESC``.
        :param count: page size.
        :param extra_params: raw query parameters passed through unchanged (e.g. ``customer_short_salutation``).
        """
        params = build_customer_params(
            email=email,
            phone=phone,
            customer_source_id=customer_source_id,
            first_name=first_name,
            last_name=last_name,
            birthdate=birthdate,
            sort_field=sort_field,
            sort_direction=sort_direction,
        )
        params.update(extra_params or {})
        _positive_int("count", count, 1)
        chunked = {
            f"{name}[]": _list_chunks(name, value)
            for name, value in (("email_list", email_list), ("customer_ids", customer_ids))
        }
        return self._iter_chunked(
            params, {name: chunks for name, chunks in chunked.items() if chunks is not None}, count
        )

    def _iter_chunked(
        self, params: dict[str, Any], chunked: dict[str, list[list[str]]], count: int
    ) -> Iterator[dict[str, Any]]:
        names = list(chunked)
        for combo in itertools.product(*(chunked[name] for name in names)):
            query = {**params, **dict(zip(names, combo, strict=True))}
            for page in self.paginate("/customers", query, items_key="customers", count=count):
                yield from page.items

    def iter_changed_customers(
        self,
        start: datetime,
        end: datetime,
        *,
        count: int = DEFAULT_PAGE_SIZE,
        extra_params: Mapping[str, Any] | None = None,
        read: ChangedRead | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield the customers whose ``last_change`` lies in ``[start, end)``, newest first, each once.

        CareCloud has no ``last_change`` filter: this sorts by ``last_change`` DESC, skips rows at or after ``end``,
        and stops paging at the first row older than ``start``. ``last_change`` is project-local time without an
        offset (``project_timezone`` extra): aware ``start``/``end`` (Airflow's data interval) are compared as
        instants; naive ones are project-local. Across a DST transition every doubt reads more: a row counts from the
        earliest instant its wall time can name, and the read goes on down to the earliest wall time that can name
        ``start`` (the repeated hour of a fall-back is read from its early side).

        It checks what it relies on: an answer not sorted by ``last_change`` newest first fails (the early stop
        would otherwise end the read silently), and each page after the first is asked from one row before it, so
        the row that ended the previous page must start it. When it does not (rows above were deleted or moved while
        the read paged, and a row may have slipped past the boundary unread), the read goes on, logs a warning and
        sets ``read.floor``: a watermark must not pass the rows after the boundary. Rows without a readable
        ``last_change`` are skipped and counted in the log.

        :param start: the interval's start (inclusive).
        :param end: the interval's end (exclusive).
        :param count: page size (at least 2: each page after the first repeats one row).
        :param extra_params: other raw query parameters (filters combine with AND).
        :param read: filled in with what the read saw (the newest row, the floor), for a watermark.
        :raises CareCloudMalformedAnswerError: for an answer not sorted by ``last_change`` newest first, or of the
            wrong shape.
        """
        return (
            row.customer
            for row in self.iter_changed_rows(start, end, count=count, extra_params=extra_params, read=read)
        )

    def iter_changed_rows(
        self,
        start: datetime,
        end: datetime,
        *,
        count: int = DEFAULT_PAGE_SIZE,
        extra_params: Mapping[str, Any] | None = None,
        read: ChangedRead | None = None,
    ) -> Iterator[ChangedCustomer]:
        """:meth:`iter_changed_customers`, each customer with the instant its ``last_change`` names (read once, here).

        :param start: the interval's start (inclusive).
        :param end: the interval's end (exclusive).
        :param count: page size (at least 2).
        :param extra_params: other raw query parameters.
        :param read: filled in with what the read saw, for a watermark.
        """
        tz = self.project_tz
        start_utc, end_utc = as_instant(start, tz), as_instant(end, tz, latest=True)
        if start_utc >= end_utc:
            raise ValueError(f"start must be before end, got {start.isoformat()} .. {end.isoformat()}.")
        params = {**(extra_params or {}), **_sort_params("last_change", "DESC")}
        count = max(_positive_int("count", count, 1), 2)
        return self._iter_changed(params, start_utc, end_utc, count, read if read is not None else ChangedRead())

    def _iter_changed(
        self, params: dict[str, Any], start: datetime, end: datetime, count: int, read: ChangedRead
    ) -> Iterator[ChangedCustomer]:
        tz = self.project_tz
        stop_before = earliest_wall(start, tz)  # a row with an earlier wall time is before ``start`` in any reading
        seen: set[str] = set()
        previous: datetime | None = None  # the wall time of the last row checked, to check the order
        last: tuple[str, Any] | None = None  # the row that ended the previous page
        offset = 0  # the position of the first row not read yet
        while True:
            asked = offset - 1 if last is not None else 0
            page = self._page("/customers", params, "customers", count, asked)
            items = page.items
            if last is not None:
                self._check_boundary(items, last, seen, asked, start, read)
            fresh = [(c, wall_time(c.get("last_change"))) for c in items if str(c.get("customer_id")) not in seen]
            previous = self._check_order(asked, previous, fresh)
            for customer, wall in fresh:
                customer_id = str(customer.get("customer_id"))
                if customer_id in seen:  # the same customer twice in one page
                    continue
                seen.add(customer_id)
                read.scanned += 1
                if wall is None:
                    read.unreadable += 1
                    continue
                if wall < stop_before:
                    self._log_changed_summary(read)
                    return
                instant = earliest_instant(wall, tz)
                if instant < end:
                    read.selected += 1
                    if read.newest is None or instant > read.newest:
                        read.newest = instant
                    yield ChangedCustomer(customer, instant)
            offset = asked + len(items)
            last = (str(items[-1].get("customer_id")), items[-1].get("last_change")) if items else last
            total = page.total_items
            if not items or (len(items) < count and (total is None or offset >= total)):
                break
        self._log_changed_summary(read)

    @staticmethod
    def _check_order(
        offset: int, previous: datetime | None, rows: list[tuple[dict[str, Any], datetime | None]]
    ) -> datetime | None:
        """Check that a page's new rows continue newest first, as asked (the whole page, before a row is used: the
        read may stop at its first row); return the wall time of its last readable row (else ``previous``).

        :raises CareCloudMalformedAnswerError: when a row is newer than the one before it.
        """
        for _, wall in rows:
            if wall is None:
                continue
            if previous is not None and wall > previous:
                raise CareCloudMalformedAnswerError(
                    f"CareCloud API GET /customers offset {offset}: the answer is not sorted by last_change, newest "
                    "first, as requested (sort_field=last_change, sort_direction=DESC): a row is newer than the one "
                    "before it. The read of changed customers relies on that order to know where to stop, so it "
                    "fails rather than miss changes (a watermark stays where it was). Check that the CRM honours "
                    "sort_field for /customers.",
                    status=200,
                )
            previous = wall
        return previous

    def _check_boundary(
        self,
        items: list[dict[str, Any]],
        last: tuple[str, Any],
        seen: set[str],
        asked: int,
        start: datetime,
        read: ChangedRead,
    ) -> None:
        """Whether the page asked from one row back starts with the row that ended the previous one; if not, and
        the rows moved up (a row above was deleted or moved away), note a floor the watermark must not pass."""
        head = items[0] if items else None
        if head is not None and (str(head.get("customer_id")), head.get("last_change")) == last:
            return
        if head is not None and str(head.get("customer_id")) in seen:
            return  # rows moved down (a row changed or added above): some are met twice, none is missed
        wall = wall_time(head.get("last_change")) if head is not None else None
        floor = start if wall is None else max(min(earliest_instant(wall, self.project_tz), read.started_at), start)
        read.floor = floor if read.floor is None else min(read.floor, floor)
        read.drifts += 1
        self.log.warning(
            "CareCloud API GET /customers offset %d: the rows moved while they were paged (the page does not start "
            "with the row that ended the previous one: a customer above was deleted or changed); one may have been "
            "skipped, so the watermark stays at or before %s and the next run reads from there.",
            asked,
            floor.isoformat(),
        )

    def _log_changed_summary(self, read: ChangedRead) -> None:
        self.log.info(
            "CareCloud changed customers: scanned %d rows, selected %d, skipped %d without a readable last_change.",
            read.scanned,
            read.selected,
            read.unreadable,
        )

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        """One customer by id (unwrapped from ``{"data": ...}``).

        :param customer_id: the CareCloud customer id.
        """
        body = self.request("GET", f"/customers/{_customer_path_id(customer_id)}")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise CareCloudMalformedAnswerError(
                "CareCloud API GET /customers/{id}: the answer has no 'data' object.", status=200
            )
        return data

    def iter_consents(
        self, *, communication_channel_id: str | None = None, count: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Yield the project's consent types (the consent catalogue: ``GET /agreements``, "GET /consents" in
        CareCloud's docs): ``{agreement_id, name, text, withdrawal_text, communication_channel_id, text_id, ...}``.

        :param communication_channel_id: only the consents tied to this channel.
        :param count: page size.
        """
        params = {} if communication_channel_id is None else {"communication_channel_id": communication_channel_id}
        for page in self.paginate(CONSENTS_PATH, params, items_key="agreements", count=count):
            yield from page.items

    def iter_communication_channels(self, *, count: int = DEFAULT_PAGE_SIZE) -> Iterator[dict[str, Any]]:
        """Yield the project's communication channels (``GET /communication-channels``):
        ``{communication_channel_id, name, text_id}``. There is no telephone-call channel.

        :param count: page size.
        """
        for page in self.paginate("/communication-channels", None, items_key="communication_channels", count=count):
            yield from page.items

    def put_customer(
        self,
        customer_id: str,
        customer: Mapping[str, Any],
        property_records: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """``PUT /customers/{customer_id}``: **replace** the customer's personal information, contact details, address
        and consents with ``customer``'s (whatever it leaves out is lost; read the customer first and send it back
        whole, as :class:`~airflow_provider_carecycle.transfers.carecloud_consent.CareCycleDoNotCallToCareCloudOperator`
        does).

        Sent once, never retried here (``max_retries=0``): a retry after an answer that did not arrive could write
        a record another user changed since; the caller reads again and decides.

        :param customer_id: the CareCloud customer id.
        :param customer: the whole customer record to write.
        :param property_records: property records to write with it.
        :raises CareCloudAPIError: (a subclass of) for an error answer.
        """
        path = f"/customers/{_customer_path_id(customer_id)}"
        body: dict[str, Any] = {"customer": dict(customer)}
        if property_records is not None:
            body["property_records"] = [dict(r) for r in property_records]
        response = self._send("PUT", path, json=body, max_retries=0)
        if response.status_code not in (200, 204):
            raise CareCloudMalformedAnswerError(
                f"CareCloud API PUT /customers/{{id}} answered {response.status_code}, not 204 No Content.",
                status=response.status_code,
            )

    def test_connection(self) -> tuple[bool, str]:
        """Log in and read one customer; return ``(ok, message)``."""
        try:
            body = self.request("GET", "/customers", params={"count": 1, "offset": 0}, max_retries=0)
        except (ApiError, ValueError, AirflowNotFoundException) as err:  # an undefined conn id: a failed test too
            return self._test_failure(err)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or "customers" not in data:
            return False, f"{self.base_url} answered, but not with a CareCloud customer list."
        return True, f"Connected to CareCloud CRM at {self.base_url} ({data.get('total_items', '?')} customers)."


__all__ = [
    "CareCloudCrmHook",
    "ChangedCustomer",
    "ChangedRead",
    "CustomerPage",
    "parse_carecloud_datetime",
]
