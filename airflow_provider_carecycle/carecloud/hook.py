"""The CareCloud CRM hook: bearer-token login, retries, rate limiting and ``count``/``offset`` paging.

CareCloud CRM (crmcarecloud.com) is the loyalty CRM a CRM-to-careCycle lead feed reads customers from. Its REST API
lives at ``https://{project_domain}/webservice/rest-api/{interface}/{version}``; this hook uses the enterprise
interface. Facts it relies on (vendor docs, see ``docs/connections-carecloud.md``):

* ``POST /users/actions/login`` with ``user_external_application_id``/``login``/``password`` returns
  ``{"data": {"bearer_token", "valid_to", ...}}``; ``valid_to`` is project-local time without an offset. Tokens last
  about 7 hours by default; on 401 the client logs in again and retries once.
* ``GET /customers`` answers ``{"data": {"customers": [...], "total_items": N}}`` and pages by ``count``/``offset``.
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
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from airflow_provider_carecycle._compat import mask_secret
from airflow_provider_carecycle.carecloud.exceptions import (
    CARECLOUD_ERRORS,
    CareCloudAuthError,
    CareCloudMalformedAnswerError,
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
#: ``YYYY-MM-DD HH:MM:SS`` (also accepted with a ``T``): how CareCloud writes ``valid_to`` and ``last_change``.
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
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


def parse_carecloud_datetime(value: Any, tz: ZoneInfo) -> datetime | None:
    """A CareCloud ``YYYY-MM-DD HH:MM:SS`` (project-local, no offset) as an aware datetime; ``None`` if unreadable.

    :param value: the text from the API.
    :param tz: the project's time zone.
    """
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.strptime(value.strip().replace("T", " ")[:19], DATETIME_FORMAT)
    except ValueError:
        return None
    return parsed.replace(tzinfo=tz)


def _positive_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def _as_project_time(value: datetime, tz: ZoneInfo) -> datetime:
    """An aware datetime in the project's zone; naive values are taken as already project-local."""
    return value.replace(tzinfo=tz) if value.tzinfo is None else value.astimezone(tz)


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
        token = self._bearer()
        send = {"params": params, "json": json, "max_retries": max_retries}
        try:
            response = self._sender.send(method, path, headers={"Authorization": f"Bearer {token}"}, **send)
        except CareCloudAuthError as err:
            if err.status != 401:
                raise
            self.log.info("CareCloud API %s %s answered 401; logging in again and retrying once.", method, path)
            token = self._bearer(stale=token)
            response = self._sender.send(method, path, headers={"Authorization": f"Bearer {token}"}, **send)
        return self._json(response, method, path)

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
            yield CustomerPage(items=items, offset=offset, total_items=total)
            offset += len(items)
            if not items or (len(items) < count and (total is None or offset >= total)):
                break
        if total is not None and total != offset:
            self.log.warning("CareCloud API GET %s: total_items said %d, %d were paged.", path, total, offset)

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
    ) -> Iterator[dict[str, Any]]:
        """Yield the customers whose ``last_change`` lies in ``[start, end)``, newest first.

        CareCloud has no ``last_change`` filter: this sorts by ``last_change`` DESC, skips rows at or after
        ``end``, and stops paging at the first row older than ``start``. ``last_change`` is project-local time
        (``project_timezone`` extra); aware ``start``/``end`` (Airflow's data interval) are converted to it,
        naive ones are taken as project-local. A customer seen twice (rows shift while paging) is yielded once;
        rows without a readable ``last_change`` are skipped and counted in the log.

        :param start: the interval's start (inclusive).
        :param end: the interval's end (exclusive).
        :param count: page size.
        :param extra_params: other raw query parameters (filters combine with AND).
        """
        tz = self.project_tz
        start_local, end_local = _as_project_time(start, tz), _as_project_time(end, tz)
        if start_local >= end_local:
            raise ValueError(f"start must be before end, got {start.isoformat()} .. {end.isoformat()}.")
        params = {**(extra_params or {}), **_sort_params("last_change", "DESC")}
        return self._iter_changed(params, start_local, end_local, _positive_int("count", count, 1))

    def _iter_changed(
        self, params: dict[str, Any], start: datetime, end: datetime, count: int
    ) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        scanned = unreadable = 0
        tz = self.project_tz
        for page in self.paginate("/customers", params, items_key="customers", count=count):
            for customer in page.items:
                scanned += 1
                changed = parse_carecloud_datetime(customer.get("last_change"), tz)
                if changed is None:
                    unreadable += 1
                    continue
                if changed < start:
                    self._log_changed_summary(scanned, len(seen), unreadable)
                    return
                customer_id = str(customer.get("customer_id"))
                if changed < end and customer_id not in seen:
                    seen.add(customer_id)
                    yield customer
        self._log_changed_summary(scanned, len(seen), unreadable)

    def _log_changed_summary(self, scanned: int, selected: int, unreadable: int) -> None:
        self.log.info(
            "CareCloud changed customers: scanned %d rows, selected %d, skipped %d without a readable last_change.",
            scanned,
            selected,
            unreadable,
        )

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        """One customer by id (unwrapped from ``{"data": ...}``).

        :param customer_id: the CareCloud customer id.
        """
        if not isinstance(customer_id, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", customer_id):
            raise ValueError(f"customer_id must be a CareCloud id (letters, digits, - and _), got {customer_id!r}.")
        body = self.request("GET", f"/customers/{customer_id}")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise CareCloudMalformedAnswerError(
                "CareCloud API GET /customers/{id}: the answer has no 'data' object.", status=200
            )
        return data

    def test_connection(self) -> tuple[bool, str]:
        """Log in and read one customer; return ``(ok, message)``."""
        try:
            body = self.request("GET", "/customers", params={"count": 1, "offset": 0}, max_retries=0)
        except (ApiError, ValueError) as err:
            return self._test_failure(err)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or "customers" not in data:
            return False, f"{self.base_url} answered, but not with a CareCloud customer list."
        return True, f"Connected to CareCloud CRM at {self.base_url} ({data.get('total_items', '?')} customers)."


__all__ = [
    "CareCloudCrmHook",
    "CustomerPage",
    "parse_carecloud_datetime",
]
