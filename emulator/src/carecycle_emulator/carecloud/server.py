"""A local emulator of the CareCloud CRM REST API (enterprise interface), enough for the CRM-to-lead feed.

Routes under ``/webservice/rest-api/{interface}/{version}``:

* ``POST /users/actions/login``: ``{"data": {"bearer_token", "valid_to", "user"}}``; ``valid_to`` in project-local
  time (``project_timezone``), tokens expire after ``token_lifetime_s`` (401 afterwards).
* ``GET /customers``: ``count``/``offset`` paging, ``sort_field``/``sort_direction`` (any scalar first-level
  field; ASC by default), filters ``email``, ``phone``, ``customer_source_id``, ``first_name``, ``last_name``,
  ``birthdate`` (``YYYY-MM-DD`` or ``DD.MM.YYYY``), ``email_list[]``/``customer_ids[]`` (bracket arrays, OR
  within, at most 1,000); envelope ``{"data": {"customers": [...], "total_items": N}}``.
* ``GET /customers/{customer_id}``: ``{"data": {...}}``. A customer carries ``state`` (0 deleted, 1 active, 2 non
  active), ``doi_phone``/``doi_email`` and ``personal_information.consents`` (``[{consent_id, consent_value,
  last_change}]``, 0 withdrawn, 1 given, 2 not set), or on some customers only the deprecated
  ``personal_information.agreement`` block.
* ``PUT /customers/{customer_id}``: body ``{"customer": {...}, "property_records": [...]}``; **replaces** the
  customer's ``personal_information`` (contact details, address, consents, agreement), ``doi_*`` and property records
  with the body's (what it leaves out is lost), sets ``last_change`` (and each changed consent's) to now; 204.
* ``GET /agreements`` (the consent catalogue, "GET /consents" in the docs; also served at ``/consents``):
  ``{"data": {"agreements": [...], "total_items": N}}``, ``count``/``offset``, filter ``communication_channel_id``.
* ``GET /communication-channels``: ``{"data": {"communication_channels": [...], "total_items": N}}``.

Test controls (``/_emulator/...``, and the same as methods): ``POST /_emulator/customers/{id}/consent`` with
``{"text_id", "value"}`` sets one consent (:meth:`CareCloudEmulator.set_consent`), ``POST
/_emulator/customers/{id}/state`` with ``{"state"}`` sets the account state (0: deleted, as CareCloud marks it;
:meth:`~CareCloudEmulator.set_state`), both bumping ``last_change``; :meth:`~CareCloudEmulator.edit_after_gets` edits a
customer once ``n`` more ``GET /customers/{id}`` answers for it have been sent (a concurrent CRM user);
``POST /_emulator/customers/delete`` with ``{"customer_ids": [...]}`` removes customers from the API altogether;
``POST /_emulator/customers/delete-after-pages`` with
``{"pages": n, "customer_ids": [...]}`` deletes them once ``n`` more ``GET /customers`` answers have been sent (rows
then move under a client paging the list); the setting ``honour_sort`` (default ``True``) set to ``False`` serves
lists in insertion order whatever ``sort_field`` asks for (a misbehaving server). By default the emulator behaves as
CareCloud does.

Errors use CareCloud's ``{"error": {"type", "exception", "title", "detail", "error_data": {"invalid_params"}}}``;
429 has no wait hint. Another interface than ``enterprise-interface`` answers 403, another version 404.
The seed (``seed``, ``customers``) is deterministic: mostly US customers (phone ``1XXXXXXXXXX``, 5-digit zip),
every 7th Czech (phone ``420...``, zip ``602 00``) and every 9th without a zip; ``last_change`` is spread over the
``days`` before ``anchor`` (:mod:`carecycle_emulator.carecloud.seed`). Standard library only.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from carecycle_emulator.base import (
    FAULT_KINDS,
    ApiError,
    EmulatorBase,
    Request,
    Response,
    Router,
    _RequestHandler,
)
from carecycle_emulator.carecloud.seed import (
    AGREEMENT_KEYS,
    COMMUNICATION_CHANNELS,
    CONSENT_IDS,
    CONSENTS,
    DATETIME_FORMAT,
    seed_customers,
)

PREFIX = "/webservice/rest-api/{interface}/{version}"
INTERFACE = "enterprise-interface"
VERSION = "v1.0"
DEFAULT_LOGIN = "airflow"
DEFAULT_PASSWORD = "emulator-password"
DEFAULT_APP_ID = "emulator-app"
MAX_LIST_ITEMS = 1000
SCALAR_FILTERS = ("email", "phone", "customer_source_id")
NAME_FILTERS = ("first_name", "last_name")

_raw_query = threading.local()


class _RawQueryHandler(_RequestHandler):
    """Keeps the raw query string, because the base parses it into a dict that drops repeated ``key[]``."""

    def _dispatch(self) -> None:
        _raw_query.text = urlsplit(self.path).query
        try:
            super()._dispatch()
        finally:
            _raw_query.text = None

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


def error_body(status: int, exception: str, title: str, invalid_params: list[dict[str, Any]] | None = None) -> dict:
    """CareCloud's error envelope."""
    error: dict[str, Any] = {"type": "about:blank", "exception": exception, "title": title, "detail": None}
    if invalid_params is not None:
        error["error_data"] = {"invalid_params": invalid_params}
    return {"error": error}


def _invalid(name: str, reason: str, message: str, value: Any = None) -> ApiError:
    params = [{"name": name, "reason": reason, "value": value, "message": message}]
    return ApiError(400, error_body(400, "bad_request_exception", "Invalid request parameters", params))


def _multi_query(request: Request) -> dict[str, list[str]]:
    raw = getattr(_raw_query, "text", None)
    if raw is None:
        return {key: [value] for key, value in request.query.items()}
    return parse_qs(raw, keep_blank_values=True)


def _int_param(query: dict[str, list[str]], name: str, default: int, minimum: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        number = int(values[-1])
    except ValueError:
        raise _invalid(name, "invalid_value_format", f"{name} must be an integer", values[-1]) from None
    if number < minimum:
        raise _invalid(name, "not_allowed_value", f"{name} must be >= {minimum}", values[-1])
    return number


def _birthdate(text: str) -> str:
    try:
        if "." in text:
            return datetime.strptime(text, "%d.%m.%Y").date().isoformat()
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise _invalid("birthdate", "invalid_value_format", "Use YYYY-MM-DD or DD.MM.YYYY", text) from None


class CareCloudEmulator(EmulatorBase):
    """A local CareCloud CRM API (see the module docstring).

    :param login: the accepted API user login.
    :param password: its password.
    :param external_application_id: the accepted ``user_external_application_id``.
    :param token_lifetime_s: seconds a bearer token stays valid.
    :param project_timezone: IANA zone of ``valid_to`` and ``last_change``.
    :param honour_sort: sort lists as ``sort_field``/``sort_direction`` ask (``False``: a misbehaving server that
        ignores them).
    :param customers: how many customers to seed.
    :param days: ``last_change`` spreads over this many days before ``anchor``.
    :param anchor: the newest ``last_change`` (project-local, naive); default: now, to the second.
    :param rate_limit: requests per ``rate_window_s`` per token (0 disables; CareCloud publishes no figure).
    :param rate_window_s: the rate-limit window.
    :param latency_ms: delay before every answer.
    :param fault_rate: probability of an injected fault (``fault_kinds``: 503, 500, drop).
    :param fault_kinds: which faults to inject.
    :param seed: the data and fault seed.
    :param host: interface to listen on.
    :param port: port (0 picks a free one).
    """

    credential_log_field = "token_suffix"

    def __init__(
        self,
        *,
        login: str = DEFAULT_LOGIN,
        password: str = DEFAULT_PASSWORD,
        external_application_id: str = DEFAULT_APP_ID,
        token_lifetime_s: float = 7 * 3600,
        project_timezone: str = "UTC",
        honour_sort: bool = True,
        customers: int = 50,
        days: float = 14,
        anchor: datetime | None = None,
        rate_limit: int = 300,
        rate_window_s: float = 60.0,
        latency_ms: float = 0,
        fault_rate: float = 0.0,
        fault_kinds: Iterable[str] = FAULT_KINDS,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.credentials = (external_application_id, login, password)
        self.token_lifetime_s = float(token_lifetime_s)
        self.project_tz = ZoneInfo(project_timezone)
        self.customer_count = int(customers)
        self.days = float(days)
        self.anchor = anchor
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._customers: dict[str, dict[str, Any]] = {}
        self._planned_deletions: list[tuple[int, list[str]]] = []
        self._planned_edits: list[tuple[int, str, dict[str, Any]]] = []
        #: customer id -> property id -> property record (written by PUT; not part of the customer's answer)
        self._properties: dict[str, dict[str, dict[str, Any]]] = {}
        self.puts = 0
        self.honour_sort = bool(honour_sort)
        self.logins = 0
        super().__init__(
            rate_limit=rate_limit,
            rate_window_s=rate_window_s,
            latency_ms=latency_ms,
            fault_rate=fault_rate,
            fault_kinds=fault_kinds,
            seed=seed,
            host=host,
            port=port,
        )
        self.reset_state()

    # -- lifecycle and control ------------------------------------------------------------------------------

    def airflow_connection(self, **extra: Any) -> str:
        """An ``AIRFLOW_CONN_*`` value (JSON) for a ``carecloud`` (CareCloud CRM) connection to this emulator.

        :param extra: connection extras to add (e.g. ``requests_per_minute``).
        """
        app_id, login, password = self.credentials
        extras = {"user_external_application_id": app_id, **extra}
        return json.dumps(
            {"conn_type": "carecloud", "host": self.url, "login": login, "password": password, "extra": extras}
        )

    @property
    def base_url(self) -> str:
        """The API base URL a client uses: ``{url}/webservice/rest-api/enterprise-interface/v1.0``."""
        return f"{self.url}/webservice/rest-api/{INTERFACE}/{VERSION}"

    def on_start(self) -> None:
        assert self._server is not None
        self._server.RequestHandlerClass = type("CareCloudHandler", (_RawQueryHandler,), {"emulator": self})

    def reset(
        self,
        customers: int | None = None,
        seed: int | None = None,
        days: float | None = None,
        anchor: datetime | None = None,
    ) -> None:
        """Reseed the customers (``None`` keeps the setting), forget every token, clear the log and rate windows."""
        super().reset(customers=customers, seed=seed, days=days, anchor=anchor)

    def reset_state(
        self,
        customers: int | None = None,
        seed: int | None = None,
        days: float | None = None,
        anchor: datetime | None = None,
    ) -> None:
        if customers is not None:
            self.customer_count = int(customers)
        if days is not None:
            self.days = float(days)
        if anchor is not None:
            self.anchor = anchor
        newest = self.anchor or self.now().replace(microsecond=0)
        rows = seed_customers(self.customer_count, self.seed, newest, self.days)
        with self._lock:
            self._customers = {row["customer_id"]: row for row in rows}
            self._planned_deletions = []
            self._planned_edits = []
            self._properties = {}
            self.puts = 0
            self._tokens.clear()
            self.logins = 0

    def configure_extra(self, kwargs: dict[str, Any]) -> None:
        if "token_lifetime_s" in kwargs:
            self.token_lifetime_s = float(kwargs.pop("token_lifetime_s"))
        if "project_timezone" in kwargs:
            self.project_tz = ZoneInfo(kwargs.pop("project_timezone"))
        if "honour_sort" in kwargs:
            self.honour_sort = bool(kwargs.pop("honour_sort"))
        super().configure_extra(kwargs)

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "token_lifetime_s": self.token_lifetime_s,
            "project_timezone": str(self.project_tz),
            "honour_sort": self.honour_sort,
        }

    def extra_counts(self) -> dict[str, int]:
        with self._lock:
            return {
                "customers": len(self._customers),
                "logins": self.logins,
                "tokens": len(self._tokens),
                "puts": self.puts,
            }

    def now(self) -> datetime:
        """The project's local time, naive (as CareCloud writes it)."""
        return datetime.now(self.project_tz).replace(tzinfo=None)

    def customers(self) -> list[dict[str, Any]]:
        """Copies of every customer, in insertion order."""
        with self._lock:
            return [_copy(row) for row in self._customers.values()]

    def touch_customer(self, customer_id: str, when: datetime | None = None, **personal: Any) -> dict[str, Any]:
        """Change a customer: set ``last_change`` (default: now) and update ``personal_information`` fields."""
        with self._lock:
            row = self._customers[customer_id]
            row["personal_information"].update(personal)
            row["last_change"] = (when or self.now()).strftime(DATETIME_FORMAT)
            return _copy(row)

    def set_consent(self, customer_id: str, text_id: str, value: int, when: datetime | None = None) -> dict[str, Any]:
        """Set one consent of a customer (in its ``consents`` list, or its deprecated ``agreement`` block when it has
        no list), as a CRM user or the customer would; bump the customer's (and the consent's) ``last_change``.

        :param customer_id: the customer's id.
        :param text_id: the consent's ``text_id`` (:data:`~carecycle_emulator.carecloud.seed.CONSENTS`).
        :param value: 0 withdrawn, 1 given, 2 not set.
        :param when: the change time (project-local, naive; default: now).
        """
        if value not in (0, 1, 2):
            raise ValueError("value must be 0, 1 or 2")
        consent_id = CONSENT_IDS[text_id]
        stamp = (when or self.now()).strftime(DATETIME_FORMAT)
        with self._lock:
            row = self._customers[customer_id]
            info = row["personal_information"]
            if "consents" in info or text_id not in AGREEMENT_KEYS.values() and "agreement" not in info:
                consents = info.setdefault("consents", [])
                entry = next((c for c in consents if c.get("consent_id") == consent_id), None)
                if entry is None:
                    consents.append({"consent_id": consent_id, "consent_value": value, "last_change": stamp})
                else:
                    entry.update(consent_value=value, last_change=stamp)
            else:
                agreement = info.setdefault("agreement", {})
                key = next((k for k, t in AGREEMENT_KEYS.items() if t == text_id), None)
                if key is not None:
                    agreement[key] = value
                else:
                    custom = agreement.setdefault("custom_agreements", [])
                    custom[:] = [c for c in custom if c.get("agreement_id") != consent_id]
                    custom.append({"agreement_id": consent_id, "agreement_value": value})
            row["last_change"] = stamp
            return _copy(row)

    def set_state(self, customer_id: str, state: int, when: datetime | None = None) -> dict[str, Any]:
        """Set a customer's account ``state`` (0 deleted, 1 active, 2 non active) and bump its ``last_change``: how
        CareCloud marks a deleted customer, who stays listed with ``state`` 0.

        :param customer_id: the customer's id.
        :param state: 0, 1 or 2.
        :param when: the change time (project-local, naive; default: now).
        """
        if state not in (0, 1, 2):
            raise ValueError("state must be 0, 1 or 2")
        with self._lock:
            row = self._customers[customer_id]
            row["state"] = state
            row["last_change"] = (when or self.now()).strftime(DATETIME_FORMAT)
            return _copy(row)

    def edit_after_gets(self, customer_id: str, gets: int = 1, **personal: Any) -> None:
        """Edit a customer (``personal_information`` fields, bumping ``last_change`` by one second at least) once
        ``gets`` more ``GET /customers/{customer_id}`` answers for it have been sent: a CRM user who saves the customer
        between a client's read and its write.

        :param customer_id: the customer's id.
        :param gets: how many reads of the customer to answer first (>= 1).
        :param personal: the ``personal_information`` fields to set.
        """
        if int(gets) < 1:
            raise ValueError("gets must be at least 1")
        with self._lock:
            self._planned_edits.append((int(gets), customer_id, dict(personal)))

    def consents(self) -> list[dict[str, Any]]:
        """The consent catalogue (``GET /agreements``)."""
        return copy.deepcopy(list(CONSENTS))

    def delete_customers(self, customer_ids: Iterable[str]) -> int:
        """Remove customers from the API altogether (CareCloud marks a deleted customer ``state`` 0 instead: see
        :meth:`set_state`) now; unknown ids are ignored. Return how many were removed.

        :param customer_ids: the customers' ids.
        """
        with self._lock:
            return sum(self._customers.pop(customer_id, None) is not None for customer_id in customer_ids)

    def delete_after_pages(self, pages: int, customer_ids: Iterable[str]) -> None:
        """Delete customers once ``pages`` more ``GET /customers`` answers have been sent: the rows below them move
        up under a client paging the list.

        :param pages: how many list answers to send first (>= 1).
        :param customer_ids: the customers to delete then.
        """
        if int(pages) < 1:
            raise ValueError("pages must be at least 1")
        with self._lock:
            self._planned_deletions.append((int(pages), list(customer_ids)))

    def expire_tokens(self) -> None:
        """Make every issued token invalid now (the next call with one answers 401)."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    # -- vendor hooks ---------------------------------------------------------------------------------------

    def build_admin_routes(self, router: Router) -> None:
        def delete(req: Request) -> Response:
            return Response(200, {"deleted": self.delete_customers(self.admin_body(req)["customer_ids"])})

        def delete_later(req: Request) -> Response:
            body = self.admin_body(req)
            self.delete_after_pages(body["pages"], body["customer_ids"])
            return Response(200, {"ok": True})

        def consent(req: Request) -> Response:
            body = self.admin_body(req)
            return Response(200, self.set_consent(req.path_params["id"], body["text_id"], int(body["value"])))

        def state(req: Request) -> Response:
            return Response(200, self.set_state(req.path_params["id"], int(self.admin_body(req)["state"])))

        router.add("POST", "/_emulator/customers/delete", delete)
        router.add("POST", "/_emulator/customers/delete-after-pages", delete_later)
        router.add("POST", "/_emulator/customers/{id}/consent", consent)
        router.add("POST", "/_emulator/customers/{id}/state", state)

    def build_routes(self, router: Router) -> None:
        router.add("POST", f"{PREFIX}/users/actions/login", self._login)
        router.add("GET", f"{PREFIX}/customers", self._list_customers)
        router.add("GET", f"{PREFIX}/customers/{{customer_id}}", self._get_customer)
        router.add("PUT", f"{PREFIX}/customers/{{customer_id}}", self._put_customer)
        router.add("GET", f"{PREFIX}/agreements", self._list_consents)
        router.add("GET", f"{PREFIX}/consents", self._list_consents)
        router.add("GET", f"{PREFIX}/communication-channels", self._list_channels)

    def authenticate(self, request: Request) -> str:
        if request.method == "POST" and request.path.rstrip("/").endswith("/users/actions/login"):
            return "login"
        header = request.header("authorization") or ""
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        with self._lock:
            expires = self._tokens.get(token)
        if expires is None or time.monotonic() >= expires:
            title = "Token expired" if expires is not None else "Missing or invalid bearer token"
            raise ApiError(401, error_body(401, "unauthorized_exception", title))
        return token

    def rate_limited_response(self, retry_after: int) -> Response:
        return Response(429, error_body(429, "too_many_requests_exception", "Too many requests"))

    def fault_response(self, kind: str) -> Response:
        if kind == "503":
            return Response(503, error_body(503, "service_unavailable_exception", "Service temporarily unavailable"))
        return Response(500, error_body(500, "internal_server_error_exception", "Internal server error"))

    def not_found_response(self, request: Request) -> Response:
        return Response(404, error_body(404, "not_found_exception", "Resource not found"))

    def bad_json_response(self, request: Request) -> Response:
        return Response(400, error_body(400, "bad_request_exception", "Request body is not valid JSON", []))

    def describe_request(self, request: Request) -> dict[str, Any]:
        return {"multi_query": _multi_query(request)}

    # -- handlers -------------------------------------------------------------------------------------------

    @staticmethod
    def _check_interface(request: Request) -> None:
        if request.path_params.get("interface") != INTERFACE:
            raise ApiError(
                403, error_body(403, "interface_not_allowed_exception", "Interface is not allowed for this user")
            )
        if request.path_params.get("version") != VERSION:
            raise ApiError(404, error_body(404, "not_found_exception", "Unknown API version"))

    def _login(self, request: Request) -> Response:
        self._check_interface(request)
        body = request.json()
        if not isinstance(body, dict):
            raise _invalid("body", "invalid_value_format", "Body must be a JSON object")
        names = ("user_external_application_id", "login", "password")
        for name in names:
            if not body.get(name):
                raise _invalid(name, "required", f"{name} is required")
        if tuple(body[name] for name in names) != self.credentials:
            raise ApiError(401, error_body(401, "unauthorized_exception", "Invalid login or password"))
        token = secrets.token_hex(20)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_lifetime_s
            self.logins += 1
        valid_to = self.now() + timedelta(seconds=self.token_lifetime_s)
        user = {"user_id": "emulator-user", "login": body["login"], "user_group": "webservice"}
        return Response(200, {"data": {"bearer_token": token, "valid_to": valid_to.strftime(DATETIME_FORMAT),
                                       "user": user}})  # fmt: skip

    def _list_customers(self, request: Request) -> dict[str, Any]:
        self._check_interface(request)
        query = _multi_query(request)
        count = _int_param(query, "count", 100, 1)
        offset = _int_param(query, "offset", 0, 0)
        filters = _filters(query)
        with self._lock:  # filter and sort the stored rows; copy only the page answered
            rows = [row for row in self._customers.values() if _matches(row, filters)]
            if self.honour_sort:
                rows = _sorted(rows, query)
            page = [_copy(row) for row in rows[offset : offset + count]]
        self._after_list_answer()
        return {"data": {"customers": page, "total_items": len(rows)}}

    def _after_list_answer(self) -> None:
        """Count a list answer towards the planned deletions; carry out the ones now due."""
        with self._lock:
            due: list[str] = []
            planned = []
            for pages, customer_ids in self._planned_deletions:
                if pages <= 1:
                    due.extend(customer_ids)
                else:
                    planned.append((pages - 1, customer_ids))
            self._planned_deletions = planned
            for customer_id in due:
                self._customers.pop(customer_id, None)

    def _get_customer(self, request: Request) -> dict[str, Any]:
        self._check_interface(request)
        customer_id = request.path_params["customer_id"]
        with self._lock:
            row = self._customers.get(customer_id)
            if row is None:
                raise ApiError(404, error_body(404, "not_found_exception", "Customer not found"))
            answer = {"data": _copy(row)}
            self._after_get(customer_id)
            return answer

    def _after_get(self, customer_id: str) -> None:
        """Count a read of the customer towards the planned edits; make the ones now due (lock held)."""
        planned = []
        for gets, planned_id, personal in self._planned_edits:
            if planned_id != customer_id:
                planned.append((gets, planned_id, personal))
            elif gets > 1:
                planned.append((gets - 1, planned_id, personal))
            else:
                row = self._customers[customer_id]
                row["personal_information"].update(personal)
                row["last_change"] = self._later_than(row["last_change"])
        self._planned_edits = planned

    def _later_than(self, stamp: str | None) -> str:
        """Now, or one second after ``stamp`` when now is not later (CareCloud's times have whole seconds)."""
        now = self.now().replace(microsecond=0)
        try:
            before = datetime.strptime(stamp or "", DATETIME_FORMAT)
        except ValueError:
            return now.strftime(DATETIME_FORMAT)
        return max(now, before + timedelta(seconds=1)).strftime(DATETIME_FORMAT)

    def _put_customer(self, request: Request) -> Response:
        self._check_interface(request)
        body = request.json()
        customer = body.get("customer") if isinstance(body, dict) else None
        if not isinstance(customer, dict):
            raise _invalid("customer", "required", 'Body must be {"customer": {...}, "property_records": [...]}')
        info = customer.get("personal_information")
        if info is not None and not isinstance(info, dict):
            raise _invalid("personal_information", "invalid_value_format", "personal_information must be an object")
        info = copy.deepcopy(info or {})
        consents = info.get("consents")
        if consents is not None:
            known = set(CONSENT_IDS.values())
            if not isinstance(consents, list) or not all(
                isinstance(c, dict) and c.get("consent_id") in known and c.get("consent_value") in (0, 1, 2)
                for c in consents
            ):
                raise _invalid("consents", "not_allowed_value", "Each consent needs a known consent_id and 0, 1 or 2")
        with self._lock:
            row = self._customers.get(request.path_params["customer_id"])
            if row is None:
                raise ApiError(404, error_body(404, "not_found_exception", "Customer not found"))
            stamp = self._later_than(row["last_change"])
            before = {
                c.get("consent_id"): c.get("consent_value") for c in row["personal_information"].get("consents") or []
            }
            for consent in consents or []:
                if before.get(consent["consent_id"]) != consent["consent_value"] or not consent.get("last_change"):
                    consent["last_change"] = stamp
            info.setdefault("address", {})
            row["personal_information"] = info  # replaced: whatever the body left out is gone
            for name in ("doi_email", "doi_phone"):
                row[name] = customer.get(name)
            records = body.get("property_records") or []
            properties = self._properties.setdefault(row["customer_id"], {})
            properties.update({str(r.get("property_id")): copy.deepcopy(r) for r in records if isinstance(r, dict)})
            row["last_change"] = stamp
            self.puts += 1
        return Response(204, None)

    def _list_consents(self, request: Request) -> dict[str, Any]:
        self._check_interface(request)
        query = _multi_query(request)
        count = _int_param(query, "count", 100, 1)
        offset = _int_param(query, "offset", 0, 0)
        channel = (query.get("communication_channel_id") or [None])[-1]
        rows = [c for c in self.consents() if channel is None or c["communication_channel_id"] == channel]
        return {"data": {"agreements": rows[offset : offset + count], "total_items": len(rows)}}

    def _list_channels(self, request: Request) -> dict[str, Any]:
        self._check_interface(request)
        query = _multi_query(request)
        count = _int_param(query, "count", 100, 1)
        offset = _int_param(query, "offset", 0, 0)
        rows = copy.deepcopy(list(COMMUNICATION_CHANNELS))
        return {"data": {"communication_channels": rows[offset : offset + count], "total_items": len(rows)}}


def _copy(row: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(row)


def _filters(query: dict[str, list[str]]) -> dict[str, Any]:
    """The request's filters as ``name -> value`` (lists as sets), validated."""
    out: dict[str, Any] = {}
    for name in (*SCALAR_FILTERS, *NAME_FILTERS):
        if query.get(name):
            out[name] = query[name][-1]
    if query.get("birthdate"):
        out["birthdate"] = _birthdate(query["birthdate"][-1])
    for name in ("email_list", "customer_ids"):
        values = query.get(f"{name}[]")
        if values is not None:
            if len(values) > MAX_LIST_ITEMS:
                raise _invalid(name, "not_allowed_value", f"At most {MAX_LIST_ITEMS} items are allowed")
            out[name] = set(values)
    return out


def _matches(row: dict[str, Any], filters: dict[str, Any]) -> bool:
    info = row["personal_information"]
    values = {
        "email": (info.get("email") or "").lower(),
        "phone": info.get("phone") or "",
        "customer_source_id": row.get("customer_source_id") or "",
        "first_name": (info.get("first_name") or "").lower(),
        "last_name": (info.get("last_name") or "").lower(),
        "birthdate": info.get("birthdate") or "",
    }
    for name, wanted in filters.items():
        if name == "email_list":
            if values["email"] not in {w.lower() for w in wanted}:
                return False
        elif name == "customer_ids":
            if row["customer_id"] not in wanted:
                return False
        elif values[name] != (wanted.lower() if name in ("email", *NAME_FILTERS) else wanted):
            return False
    return True


def _sorted(rows: list[dict[str, Any]], query: dict[str, list[str]]) -> list[dict[str, Any]]:
    field = (query.get("sort_field") or [None])[-1]
    direction = ((query.get("sort_direction") or ["ASC"])[-1]).upper()
    if direction not in ("ASC", "DESC"):
        raise _invalid("sort_direction", "not_allowed_value", "Allowed values: ASC, DESC", direction)
    if not field:
        return rows
    if rows and (field not in rows[0] or isinstance(rows[0][field], (dict, list))):
        raise _invalid("sort_field", "not_allowed_value", "Sort by a first-level scalar field", field)
    rows = sorted(rows, key=lambda r: r["customer_id"])  # stable tie-break
    return sorted(rows, key=lambda r: (r.get(field) is None, str(r.get(field))), reverse=direction == "DESC")
