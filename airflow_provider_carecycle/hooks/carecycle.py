"""The careCycle hook: authentication, retries, client-side rate limiting and pagination for the careCycle v2 API.

Why one module of this size: the hook owns every endpoint path of the API (and the async poll of a campaign the
trigger sends), so each endpoint's request and answer rules sit next to the others'.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_carecycle._compat import AirflowNotFoundException, mask_secret
from airflow_provider_carecycle.connection_forms import (
    CARECYCLE_DEFAULT_BASE_URL,
    CARECYCLE_DEFAULT_CONN_ID,
    CARECYCLE_FORM,
)
from airflow_provider_carecycle.exceptions import (
    CARECYCLE_ERRORS,
    ApiError,
    CareCycleAuthError,
    CareCycleMalformedAnswerError,
    api_token,
)
from airflow_provider_carecycle.hooks._api import ApiHook, ErrorAnswer, connection_base_url
from airflow_provider_carecycle.hooks._http import Answer as HttpAnswer
from airflow_provider_carecycle.hooks._http import header_safe
from airflow_provider_carecycle.hooks.customer_filters import customer_query_params
from airflow_provider_carecycle.hooks.paging import Answer, DriftSafePages
from airflow_provider_carecycle.ids import require_uuid
from airflow_provider_carecycle.values import page_size
from airflow_provider_carecycle.vocabulary import (
    CALL_SORT_FIELDS,
    CAMPAIGN_SORT_FIELDS,
    CAMPAIGN_STATUSES,
    MAX_PER_PAGE,
    MAX_RECORDS_PER_UPLOAD,
    SORT_DIRECTIONS,
)

if TYPE_CHECKING:
    pass

DEFAULT_BASE_URL = CARECYCLE_DEFAULT_BASE_URL
API_KEY_PREFIX = "cc_"
DEFAULT_RETRY_AFTER_S = 60.0

#: Connection extras the hook reads, with their types and defaults: a view of the connection form.
EXTRA_FIELDS = CARECYCLE_FORM.extras

log = logging.getLogger(__name__)


@dataclass
class Page:
    """One page of a careCycle list: its items and the envelope's counters."""

    items: list[dict[str, Any]]
    number: int
    items_total: int | None


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"Invalid {name} {value!r}. Valid values: {', '.join(choices)}.")
    return value


def retry_after_seconds(value: Any) -> float:
    """The wait a 429 asked for: ``value`` (``retryAfter`` or the ``Retry-After`` header) when it is a finite number
    >= 0, else the documented default of 60 s.

    :param value: what the API sent (a number, a text, ``None``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return DEFAULT_RETRY_AFTER_S
    try:
        seconds = float(value)
    except ValueError:
        return DEFAULT_RETRY_AFTER_S
    return seconds if math.isfinite(seconds) and seconds >= 0 else DEFAULT_RETRY_AFTER_S


def _per_page(per_page: int) -> int:
    return page_size("per_page", per_page, MAX_PER_PAGE)


class CareCycleHook(ApiHook):
    """Talks to the careCycle v2 API.

    The API key comes from the connection's password (it must start with ``cc_``); the base URL from its host
    (default ``https://api.carecycle.ai``; a host without a scheme takes the connection's schema, else ``https``).
    Every request carries a timeout, waits for the key's rate limiter (host-wide by default, with adaptive pacing
    for other hosts; in Redis with the connection extra ``rate_limit_backend``; state folder: extra
    ``rate_limit_dir``; see ``docs/rate-limits-and-errors.md``), and is retried on 429 (waiting the
    API's ``retryAfter``), on 500/502/503/504 and on connection errors (exponential backoff with jitter). Other errors
    raise a :class:`~airflow_provider_carecycle.exceptions.CareCycleAPIError` at once. Redirects are not followed,
    ``http://`` base URLs are refused unless loopback or ``allow_insecure_http``, and the connection's ``proxies``
    and ``verify`` win over the environment's (see ``docs/connections.md``). Settings, session, retries and error
    answers are the transport's (:class:`~airflow_provider_carecycle.hooks._api.ApiHook`); this class is the key
    and the endpoints.

    :param carecycle_conn_id: the Airflow connection to use.
    :param timeout: seconds to wait for each answer (connection extra ``timeout``; default 30).
    :param max_retries: retries after the first attempt (connection extra ``max_retries``; default 5).
    :param requests_per_minute: client-side rate limit (connection extra ``requests_per_minute``; default 60).
    :param max_retry_after: the longest ``retryAfter`` of a 429 the worker sleeps through (connection extra
        ``max_retry_after``; default 300 s); a longer one fails the attempt at once so Airflow's task retries take over.
    :param retry_backoff: first backoff in seconds for 5xx and connection errors, doubling up to 30 s.
    :param rate_limit_window: the rate limit's window in seconds: careCycle's is 60; set it to the window of the
        server the connection names when that differs (the local emulator's can be set shorter).
    :param sleep: how the hook waits before a retry (default: tenacity's sleep).
    """

    conn_name_attr = "carecycle_conn_id"
    default_conn_name = CARECYCLE_DEFAULT_CONN_ID
    conn_type = CARECYCLE_FORM.conn_type
    hook_name = CARECYCLE_FORM.hook_name
    form = CARECYCLE_FORM
    errors = CARECYCLE_ERRORS

    def __init__(
        self,
        carecycle_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        requests_per_minute: int | None = None,
        max_retry_after: float | None = None,
        retry_backoff: float = 1.0,
        rate_limit_window: float = 60.0,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.carecycle_conn_id = carecycle_conn_id
        super().__init__(
            overrides={
                "timeout": timeout,
                "max_retries": max_retries,
                "requests_per_minute": requests_per_minute,
                "max_retry_after": max_retry_after,
            },
            retry_backoff=retry_backoff,
            rate_limit_window=rate_limit_window,
            sleep=sleep,
        )

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form for Airflow 2.x-3.1 (3.2+ reads the same from provider info). Airflow reads it only
        from the hook class's own ``__dict__``, so each hook defines it rather than inheriting it."""
        return cls.form.ui_field_behaviour()

    # -- the key -------------------------------------------------------------------------------------------------

    def _connection_settings(self, conn: Any, settings: dict[str, Any]) -> dict[str, Any]:
        api_key = (conn.password or "").strip()
        if not api_key.startswith(API_KEY_PREFIX):
            problem = (
                "has no API key in its password field"
                if not api_key
                else "has an API key that does not start with 'cc_'"
            )
            raise CareCycleAuthError(
                f"Airflow connection {self.carecycle_conn_id!r} {problem}. Put the careCycle API key "
                "(from the careCycle Developer Dashboard, it starts with 'cc_') in the connection's password."
            )
        mask_secret(api_key)
        if not header_safe(api_key):
            raise CareCycleAuthError(
                f"Airflow connection {self.carecycle_conn_id!r} has an API key with characters an HTTP header cannot "
                "carry (a line break, a space, a control or non-ASCII character). Copy the key again from the "
                "careCycle Developer Dashboard into the connection's password, without surrounding text."
            )
        return {"api_key": api_key, "base_url": connection_base_url(conn) or DEFAULT_BASE_URL}

    def _session_headers(self) -> dict[str, str]:
        return {"x-api-key": self._settings["api_key"]}

    def _limiter_identity(self) -> str:
        """careCycle's limit belongs to the API key."""
        return self._settings["api_key"]

    def _auth_advice(self, status: int) -> str:
        return (
            "Check the API key in the Airflow connection: it must be a valid, unexpired careCycle key with "
            "permission for this endpoint."
        )

    def _read_error(self, response: HttpAnswer) -> ErrorAnswer:
        """The ``{code, errors, failedRecords, retryAfter}`` of an error answer. The API's free-text ``message`` is
        not kept (it may echo a value, ``Invalid search 'Jane Doe'``)."""
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        retry_after = None
        if response.status_code == 429:
            retry_after = retry_after_seconds(body.get("retryAfter", response.headers.get("Retry-After")))
        details = {"errors": body.get("errors"), "failed_records": body.get("failedRecords")}
        return ErrorAnswer(code=api_token(body.get("code")), retry_after=retry_after, details=details)

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
        """Send one API request with rate limiting and retries; return the decoded JSON body (required: an empty or
        non-JSON success answer raises :class:`~airflow_provider_carecycle.exceptions.CareCycleMalformedAnswerError`).

        :param method: the HTTP method.
        :param path: the path under the base URL, e.g. ``/v2/customers``.
        :param params: query parameters.
        :param json: a JSON body.
        :param max_retries: retries for this request only (default: the connection's setting).
        :raises CareCycleAPIError: (a subclass of) when the API answers an error, or retries are exhausted.
        """
        response = self._sender.send(method, path, params=params, json=json, max_retries=max_retries)
        return self._json(response, method, path)

    # -- pagination ----------------------------------------------------------------------------------------------

    def paginate(
        self, path: str, params: Mapping[str, Any] | None = None, per_page: int = MAX_PER_PAGE
    ) -> Iterator[Page]:
        """Yield the pages of a ``page``/``perPage`` list lazily, one request per page.

        Goes on to the real last page: stops when ``nextPage`` is null, absent or 0, or on an empty page. A
        ``nextPage`` that does not advance also stops it (with a warning), so it can never loop forever.
        ``itemsTotal`` only informs: when it disagrees with the items paged, a warning says so. Rows deleted or
        created while the list is paged move the pages still to come; the read makes up for it (a row is yielded
        once; when the total shrinks, the pages before are read again for the rows that moved up past the offset),
        see :mod:`~airflow_provider_carecycle.hooks.paging`.

        :param path: the list's path.
        :param params: query parameters other than ``page``/``perPage``.
        :param per_page: page size, 1-100.
        :raises CareCycleMalformedAnswerError: for an answer that is not an object with an ``items`` list, or whose
            ``nextPage`` is neither an integer nor null.
        :raises CareCycleListChangedError: (retryable) when more rows were deleted between two page requests than
            the read can make up for.
        """
        per_page = _per_page(per_page)

        def fetch(page: int) -> Answer:
            body = self.request("GET", path, params={**(params or {}), "page": page, "perPage": per_page})
            where = f"careCycle API GET {path} page {page}"
            items = body.get("items") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise CareCycleMalformedAnswerError(f"{where}: the answer has no 'items' list.", status=200)
            next_page = body.get("nextPage")
            if next_page is not None and (isinstance(next_page, bool) or not isinstance(next_page, int)):
                raise CareCycleMalformedAnswerError(
                    f"{where}: 'nextPage' is neither an integer nor null ({type(next_page).__name__}).", status=200
                )
            total = body.get("itemsTotal")
            return Answer(items, next_page, total if isinstance(total, int) and not isinstance(total, bool) else None)

        pages = DriftSafePages(fetch, per_page=per_page, where=f"careCycle API GET {path}")
        seen, total = 0, None
        for number, items, total in pages:
            yield Page(items=items, number=number, items_total=total)
            seen += len(items)
        if total is not None and total != seen:
            self.log.warning("careCycle API GET %s: itemsTotal said %d items, %d were paged.", path, total, seen)

    def _iter_items(self, path: str, params: Mapping[str, Any], per_page: int) -> Iterator[dict[str, Any]]:
        for page in self.paginate(path, params, per_page):
            yield from page.items

    def customer_pages(
        self,
        filters: Mapping[str, Any] | None = None,
        *,
        extra_params: Mapping[str, Any] | None = None,
        per_page: int = MAX_PER_PAGE,
    ) -> Iterator[Page]:
        """The pages of ``GET /v2/customers`` for the filters, fetched lazily, one request per page.

        The filters and the page size are checked at once, before any request; the pages come as they are read.

        :param filters: snake_case customer filters (see ``customer_filters.CUSTOMER_FILTERS``), e.g.
            ``{"statuses": ["Lead"], "states": ["FL", "TX"], "start_date": date(2026, 1, 1)}``.
        :param extra_params: raw query parameters passed through unchanged (they win over the filters).
        :param per_page: page size, 1-100.
        :raises ValueError: for an unknown filter, an invalid value or page size.
        """
        params = customer_query_params(filters or {}, extra_params)
        return self.paginate("/v2/customers", params, _per_page(per_page))

    def call_pages(
        self,
        customer_id: str,
        *,
        sort_by: str = "createdAt",
        sort_direction: str = "desc",
        per_page: int = MAX_PER_PAGE,
    ) -> Iterator[Page]:
        """The pages of ``GET /v2/customers/{customer_id}/calls``, fetched lazily, one request per page.

        The arguments are checked at once, before any request.

        :param customer_id: the customer's UUID.
        :param sort_by: ``createdAt``, ``disposition`` or ``duration``.
        :param sort_direction: ``asc`` or ``desc``.
        :param per_page: page size, 1-100.
        :raises ValueError: for an id that is not a UUID, an unknown order or an invalid page size.
        """
        params = {
            "sortBy": _choice("sort_by", sort_by, CALL_SORT_FIELDS),
            "sortDirection": _choice("sort_direction", sort_direction, SORT_DIRECTIONS),
        }
        path = f"/v2/customers/{require_uuid('customer_id', customer_id)}/calls"
        return self.paginate(path, params, _per_page(per_page))

    # -- public API ----------------------------------------------------------------------------------------------

    def iter_customers(
        self, *, per_page: int = MAX_PER_PAGE, extra_params: Mapping[str, Any] | None = None, **filters: Any
    ) -> Iterator[dict[str, Any]]:
        """Yield every customer matching the filters, page after page.

        :param per_page: page size, 1-100.
        :param extra_params: raw query parameters passed through unchanged.
        :param filters: snake_case customer filters (see ``customer_filters.CUSTOMER_FILTERS``), e.g.
            ``statuses=["Lead"], states=["FL", "TX"], start_date=date(2026, 1, 1)``.
        """
        pages = self.customer_pages(filters, extra_params=extra_params, per_page=per_page)
        return (item for page in pages for item in page.items)

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        """One customer with full details (policies, prescriptions, providers, dependents, custom fields).

        :param customer_id: the customer's UUID.
        """
        path = f"/v2/customers/{require_uuid('customer_id', customer_id)}"
        body = self.request("GET", path)
        if not isinstance(body, dict):
            raise CareCycleMalformedAnswerError(f"careCycle API GET {path}: the answer is not a customer.", status=200)
        return body

    def iter_customer_calls(
        self,
        customer_id: str,
        sort_by: str = "createdAt",
        sort_direction: str = "desc",
        *,
        per_page: int = MAX_PER_PAGE,
    ) -> Iterator[dict[str, Any]]:
        """Yield one customer's calls.

        :param customer_id: the customer's UUID.
        :param sort_by: ``createdAt``, ``disposition`` or ``duration``.
        :param sort_direction: ``asc`` or ``desc``.
        :param per_page: page size, 1-100.
        """
        pages = self.call_pages(customer_id, sort_by=sort_by, sort_direction=sort_direction, per_page=per_page)
        return (item for page in pages for item in page.items)

    def upload_leads(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Upload 1-200 lead records in one request; return the API's answer as is.

        :param records: lead records in careCycle's field names.
        """
        self._check_upload_size("upload_leads", len(records))
        return self.request("POST", "/v2/leads/upload", json={"records": records})

    def upload_lead_texts(self, texts: Sequence[str]) -> dict[str, Any]:
        """Upload 1-200 leads given as JSON text in one request; return the API's answer as is.

        The request body is built from the texts as they are (the lead upload engine spools each lead as compact JSON
        text once and sends that text, without parsing it again).

        :param texts: each lead as one JSON object in careCycle's field names.
        """
        self._check_upload_size("upload_lead_texts", len(texts))
        body = '{"records":[' + ",".join(texts) + "]}"
        return self.request("POST", "/v2/leads/upload", json=body.encode())

    @staticmethod
    def _check_upload_size(method: str, records: int) -> None:
        if not 1 <= records <= MAX_RECORDS_PER_UPLOAD:
            raise ValueError(f"{method} takes 1 to {MAX_RECORDS_PER_UPLOAD} records per request, got {records}.")

    def iter_campaigns(
        self,
        status: str | None = None,
        search: str | None = None,
        sort_by: str = "createdAt",
        sort_direction: str = "desc",
        *,
        per_page: int = MAX_PER_PAGE,
    ) -> Iterator[dict[str, Any]]:
        """Yield campaigns, each with its ``customerStats``.

        :param status: one campaign status (``active``, ``paused``, ...), or ``None`` for all.
        :param search: text matched against name and description.
        :param sort_by: ``createdAt``, ``updatedAt``, ``name``, ``status`` or ``startDate``.
        :param sort_direction: ``asc`` or ``desc``.
        :param per_page: page size, 1-100.
        """
        params: dict[str, Any] = {
            "sortBy": _choice("sort_by", sort_by, CAMPAIGN_SORT_FIELDS),
            "sortDirection": _choice("sort_direction", sort_direction, SORT_DIRECTIONS),
        }
        if status is not None:
            params["status"] = _choice("status", status, CAMPAIGN_STATUSES)
        if search:
            params["search"] = search
        return self._iter_items("/v2/campaigns", params, per_page)

    def get_campaign(self, campaign_id: str) -> dict[str, Any]:
        """One campaign (unwrapped from ``{"campaign": ...}``).

        :param campaign_id: the campaign's UUID.
        """
        path = _campaign_path(campaign_id)
        return _campaign_in(path, self.request("GET", path))

    async def aget_campaign(self, campaign_id: str) -> dict[str, Any]:
        """:meth:`get_campaign` on the event loop, through the async transport (after :meth:`prepare_async`, which
        reads the connection off the loop): no thread is held while it waits for the key's budget or a retry.

        :param campaign_id: the campaign's UUID.
        """
        path = _campaign_path(campaign_id)
        return _campaign_in(path, await self.arequest("GET", path))

    def test_connection(self) -> tuple[bool, str]:
        """Check the key and URL with the cheapest call (one customer); return ``(ok, message)``."""
        try:
            body = self.request("GET", "/v2/customers", params={"page": 1, "perPage": 1}, max_retries=0)
        except (ApiError, ValueError, AirflowNotFoundException) as err:  # an undefined conn id: a failed test too
            return self._test_failure(err)
        if not isinstance(body, dict) or "items" not in body:
            return False, f"{self.base_url} answered, but not with a careCycle customer list."
        return (
            True,
            f"Connected to careCycle at {self.base_url} ({body.get('itemsTotal', '?')} customers visible).",
        )

    @property
    def destination_id(self) -> str:
        """Names where this hook's requests go without revealing the key: sha256 of the base URL and the API key,
        first 32 hex digits (lead upload checkpoints are bound to it)."""
        import hashlib  # here, so this property stays one self-contained addition

        digest = hashlib.sha256(f"{self._settings['base_url']}\n{self._settings['api_key']}".encode())
        return digest.hexdigest()[:32]


def _campaign_path(campaign_id: str) -> str:
    return f"/v2/campaigns/{require_uuid('campaign_id', campaign_id)}"


def _campaign_in(path: str, body: Any) -> dict[str, Any]:
    """The campaign of a ``GET /v2/campaigns/{id}`` answer (``{"campaign": {...}}`` or the campaign itself)."""
    campaign = body.get("campaign", body) if isinstance(body, dict) else None
    if not isinstance(campaign, dict):
        raise CareCycleMalformedAnswerError(f"careCycle API GET {path}: the answer is not a campaign.", status=200)
    return campaign
