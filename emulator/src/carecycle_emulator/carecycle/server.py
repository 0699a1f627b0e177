"""The careCycle v2 API emulator: routes, auth, errors and the Python control API.

Behaviour the public docs do not pin down is decided here, in one place (UNVERIFIED, our assumptions):

======================================  ==================================================================
``nextPage`` / ``prevPage``             ``null`` on the last / first page (and ``nextPage`` null when empty)
filter names                            ``customerCampaignStatuses``, ``hasPriorAttempts``, ``pulseNodeId``,
                                        ``policyStatuses``, ``assignedMemberIds``, ``statuses``,
                                        ``lastCallStartDate``, ``lastCallEndDate``, ``states``, ``counties``,
                                        ``policyTypes``, ``agingInMonths`` (3, 6 or 12)
``customerCampaignStatuses``            any of the statuses in any campaign (not scoped by ``campaignIds``)
``hasPriorAttempts``                    true: some campaign membership (within ``campaignIds`` if given) has
                                        ``totalCalls > 0``; false: some membership has none
``sourceIds``                           public ``sourceId`` values or source UUIDs
``states`` / ``counties``               case-insensitive exact match
``search``                              substring of first/last/full name, email, phone, city, state, county
``dateField=effectiveDate|enrollment``  some policy's date within ``startDate``..``endDate`` (inclusive)
``lastCallStartDate``/``EndDate``       ``lastCallDate`` (the newest call's ``createdAt``) within the bounds; a date
                                        alone covers its whole UTC day (both bounds inclusive)
calls                                   never change once placed (only a deletion in the web app removes one)
unknown query parameters                ignored
unrecognised lead fields                rejected; issue path ``["records", i, "<field>"]``
lead upsert identity                    ``externalId`` when given, else the phone's 10 digits
new leads                               status ``Lead``; join every campaign with ``takes_new_leads``
429                                     body only (``retryAfter`` seconds), no ``Retry-After`` header
read-only keys                          ``"cc_key:read"`` in ``api_keys``: 403 on ``POST /v2/leads/upload``
======================================  ==================================================================

Lists page by offset (``page``/``perPage``), as careCycle's do: a row deleted while a client pages shifts the rows
after it one place up, so the client's next page starts one row later. careCycle's API has no delete; customers
and calls are deleted in its web app. The control API does it too (:meth:`CareCycleEmulator.delete_customers`,
:meth:`~CareCycleEmulator.delete_calls`), and :meth:`~CareCycleEmulator.delete_between_pages` does it between two
page requests of a client's read. Nothing is deleted unless a test asks.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from carecycle_emulator.base import (
    FAULT_KINDS,
    ApiError,
    EmulatorBase,
    Request,
    Response,
    Router,
)
from carecycle_emulator.carecycle import validation as v
from carecycle_emulator.carecycle import vocabulary
from carecycle_emulator.carecycle.dialer import Dialer
from carecycle_emulator.carecycle.seed import rng_uuid, seed_store, turns_65
from carecycle_emulator.carecycle.store import (
    CUSTOMER_SORT_COLUMNS,
    FLAG_COLUMNS,
    Store,
    iso,
    like_pattern,
    now_iso,
)

DEFAULT_API_KEY = "cc_emulator_key"
API_KEY_PREFIX = "cc_"
READ_ONLY_SUFFIXES = (":read", ":readonly", ":ro")

#: lead field -> customers column (other lead fields go to the ``extra`` JSON)
LEAD_COLUMNS = {
    "firstName": "first_name",
    "lastName": "last_name",
    "email": "email",
    "postalCode": "postal_code",
    "timezone": "timezone",
    "state": "state",
    "city": "city",
    "county": "county",
    "address": "address",
    "address2": "address2",
    "gender": "gender",
    "maritalStatus": "marital_status",
    "mbiNumber": "mbi",
    "externalId": "external_id",
}
LEAD_SPECIAL = {"phoneNumber", "dateOfBirth", "customFields", "sourceId", *FLAG_COLUMNS}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"message": message, "code": code, **extra}


def batch_fingerprint(body: Any) -> str:
    """sha256 of the canonical JSON of a request body (``sort_keys``, compact separators, ASCII)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def envelope(items: list[Any], total: int, page: int, per_page: int) -> dict[str, Any]:
    return {
        "itemsTotal": total,
        "currentPage": page,
        "nextPage": page + 1 if page * per_page < total else None,
        "prevPage": page - 1 if page > 1 else None,
        "items": items,
    }


def parse_api_keys(api_keys: Iterable[str] | str) -> dict[str, str]:
    """``{"cc_key": "write", "cc_ro": "read"}`` from entries like ``"cc_key"`` or ``"cc_ro:read"``."""
    if isinstance(api_keys, str):
        api_keys = [api_keys]
    out: dict[str, str] = {}
    for entry in api_keys:
        entry = str(entry)
        for suffix in READ_ONLY_SUFFIXES:
            if entry.endswith(suffix):
                out[entry[: -len(suffix)]] = "read"
                break
        else:
            out[entry.removesuffix(":write")] = "write"
    return out


def add_months(day: date, months: int) -> date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    for dom in (day.day, 30, 29, 28):
        try:
            return date(year, month, dom)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def _validation_error(issues: list[dict[str, Any]], **extra: Any) -> ApiError:
    return ApiError(400, error_body("VALIDATION_ERROR", "Validation failed", errors=issues, **extra))


@dataclass
class _PageDeletion:
    """Rows to delete once ``after`` more list pages (of lists whose path starts with ``path``) were answered."""

    after: int
    customers: tuple[str, ...]
    calls: tuple[str, ...]
    path: str


def _require_uuid(value: str, name: str = "id") -> None:
    if not v.UUID_RE.match(value):
        raise _validation_error([v.issue([name], "Invalid uuid", "uuid", value, "invalid_string")])


class CareCycleEmulator(EmulatorBase):
    """A local careCycle v2 API (see the module docstring and the provider docs)."""

    credential_log_field = "api_key_suffix"

    def __init__(
        self,
        api_keys: Iterable[str] = (DEFAULT_API_KEY,),
        rate_limit: int = 60,
        rate_window_s: float = 60.0,
        latency_ms: float = 0,
        fault_rate: float = 0.0,
        fault_kinds: Iterable[str] = FAULT_KINDS,
        seed: int = 0,
        customers: int = 50,
        campaigns: int = 3,
        dialer_speed: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_keys = parse_api_keys(api_keys)
        self.customers = int(customers)
        self.campaigns = int(campaigns)
        self.store = Store()
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
        self.dialer = Dialer(self.store, self.seed)
        self._page_deletions: list[_PageDeletion] = []
        self._deletions_lock = threading.Lock()
        self._id_rng = random.Random(f"ids:{self.seed}")
        self._dialer_speed = float(dialer_speed)
        seed_store(self.store, seed=self.seed, customers=self.customers, campaigns=self.campaigns)

    # -- lifecycle hooks ------------------------------------------------------------------------------------

    def on_start(self) -> None:
        self.dialer.set_speed(self._dialer_speed)

    def on_stop(self) -> None:
        self.dialer.stop()

    # -- control API ----------------------------------------------------------------------------------------

    def reset(self, customers: int | None = None, campaigns: int | None = None, seed: int | None = None) -> None:
        """Wipe and reseed (``None`` keeps the current value); clears the request log and rate windows."""
        super().reset(customers=customers, campaigns=campaigns, seed=seed)

    def reset_state(self, customers: int | None = None, campaigns: int | None = None, seed: int | None = None) -> None:
        if customers is not None:
            self.customers = int(customers)
        if campaigns is not None:
            self.campaigns = int(campaigns)
        with self.store.lock:
            seed_store(self.store, seed=self.seed, customers=self.customers, campaigns=self.campaigns)
            self.dialer.reseed(self.seed)
            self._id_rng = random.Random(f"ids:{self.seed}")
        with self._deletions_lock:
            self._page_deletions.clear()

    def configure_extra(self, kwargs: dict[str, Any]) -> None:
        if "api_keys" in kwargs:
            self.api_keys = parse_api_keys(kwargs.pop("api_keys"))
        if "dialer_speed" in kwargs:
            self._dialer_speed = float(kwargs.pop("dialer_speed"))
            if self.running:
                self.dialer.set_speed(self._dialer_speed)
        super().configure_extra(kwargs)

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        out["api_keys"] = [k if p == "write" else f"{k}:read" for k, p in self.api_keys.items()]
        out["dialer_speed"] = self._dialer_speed
        out.update(seed=self.seed, customers=self.customers, campaigns=self.campaigns)
        return out

    def extra_counts(self) -> dict[str, int]:
        return self.store.counts()

    def query_customers(self, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The emulator's own answer to a ``GET /v2/customers`` query, all pages (``page``/``perPage`` ignored).

        Values may be strings, lists (joined with commas), booleans or numbers. Raises ``ValueError`` with the
        validation issues when the API would answer 400.
        """
        query = {k: _param_text(val) for k, val in (params or {}).items() if val is not None}
        query.pop("page", None)
        query.pop("perPage", None)
        try:
            where, args, sort_col, direction, _, _ = self._customer_query(query)
        except ApiError as err:
            raise ValueError(json.dumps(err.body)) from None
        with self.store.lock:
            _, ids = self.store.query_customer_ids(where, args, sort_col, direction, None, 0)
            return self.store.customers_by_ids(ids)

    def airflow_connection(self, api_key: str | None = None, **extra: Any) -> str:
        """An ``AIRFLOW_CONN_*`` value (JSON) for a ``carecycle`` connection to this emulator.

        :param api_key: the key to use; default: the first key allowed to upload.
        :param extra: connection extras (e.g. ``requests_per_minute``).
        """
        key = api_key or next(key for key, access in self.api_keys.items() if access == "write")
        connection: dict[str, Any] = {"conn_type": "carecycle", "host": self.url, "password": key}
        if extra:
            connection["extra"] = extra
        return json.dumps(connection)

    def get_customers_by_external_id(self) -> dict[str, list[dict[str, Any]]]:
        return self.store.customers_by_external_id()

    def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        return self.store.get_customer(customer_id)

    def list_campaigns(self) -> list[dict[str, Any]]:
        return self.store.query_campaigns(None, None, "createdAt", "asc", None, 0)[1]

    def sources(self) -> list[dict[str, Any]]:
        return self.store.sources()

    def members(self) -> list[dict[str, Any]]:
        return self.store.members()

    def set_campaign_status(self, campaign_id: str, status: str) -> dict[str, Any]:
        if status not in vocabulary.CAMPAIGN_STATUSES:
            raise ValueError(f"Invalid campaign status {status!r}; valid: {', '.join(vocabulary.CAMPAIGN_STATUSES)}")
        if not self.store.set_campaign_status(campaign_id, status):
            raise KeyError(f"No campaign {campaign_id}")
        return self.store.get_campaign(campaign_id)  # type: ignore[return-value]

    def delete_customers(self, customer_ids: Iterable[str]) -> int:
        """Delete customers (with their memberships, policies and calls), as careCycle's web app does; return how many
        existed."""
        return self.store.delete_customers(customer_ids)

    def delete_calls(self, call_ids: Iterable[str]) -> int:
        """Delete calls; return how many existed."""
        return self.store.delete_calls(call_ids)

    def delete_between_pages(
        self,
        *,
        after: int = 1,
        customers: Iterable[str] = (),
        calls: Iterable[str] = (),
        path: str = "/v2/customers",
    ) -> None:
        """Delete rows in the middle of a client's paged read: once ``after`` more pages of a list whose path starts
        with ``path`` (``/v2/customers`` also covers each customer's calls) have been answered, before the next
        request is answered. Each call schedules one deletion; :meth:`reset` drops those not done yet.

        :param after: list pages to answer first (at least 1).
        :param customers: customer ids to delete then.
        :param calls: call ids to delete then.
        :param path: which lists count (a path prefix).
        """
        if int(after) < 1:
            raise ValueError("after must be at least 1")
        with self._deletions_lock:
            self._page_deletions.append(_PageDeletion(int(after), tuple(customers), tuple(calls), path))

    def _page_answered(self, path: str) -> None:
        """Count one answered list page; run the deletions that were waiting for it."""
        due: list[_PageDeletion] = []
        waiting: list[_PageDeletion] = []
        with self._deletions_lock:
            for deletion in self._page_deletions:
                if path.startswith(deletion.path):
                    deletion.after -= 1
                (due if deletion.after <= 0 else waiting).append(deletion)
            self._page_deletions = waiting
        for deletion in due:
            self.store.delete_customers(deletion.customers)
            self.store.delete_calls(deletion.calls)

    def record_call(
        self, customer_id: str, disposition: str, campaign_id: str | None = None, when: datetime | None = None
    ) -> dict[str, Any]:
        """Place one call to a customer now that ends with ``disposition`` (as if the dialer had heard it; a
        ``"Do Not Call"`` disposition sets the customer's ``doNotCall``); return the customer.

        :param customer_id: the customer's id.
        :param disposition: the call's disposition.
        :param campaign_id: the campaign the call belongs to (``None``: none).
        :param when: when the call was placed (aware; default: now).
        """
        if self.store.customer_row(customer_id) is None:
            raise KeyError(f"No customer {customer_id}")
        ts = now_iso() if when is None else iso(when)
        with self.store.lock:
            self.store.add_call(
                call_id=rng_uuid(self._id_rng),
                customer_id=customer_id,
                campaign_id=campaign_id,
                created_at=ts,
                disposition=disposition,
                duration_ms=30_000,
                summary=f"{disposition} (recorded by a test)",
                success="false",
            )
        return self.store.customers_by_ids([customer_id])[0]

    def tick_dialer(self, steps: int = 1, at: datetime | str | None = None) -> int:
        """Advance the dialer ``steps`` ticks; return the number of calls placed.

        :param at: place the calls then (a datetime or ISO text; naive means UTC) instead of now, to build a call
            history over several days.
        """
        when = datetime.fromisoformat(at.replace("Z", "+00:00")) if isinstance(at, str) else at
        return self.dialer.tick(steps, at=when)

    def add_campaign(
        self,
        name: str = "Emulator campaign",
        status: str = "active",
        takes_new_leads: bool = True,
        description: str | None = None,
        max_attempts: int = 3,
    ) -> dict[str, Any]:
        if status not in vocabulary.CAMPAIGN_STATUSES:
            raise ValueError(f"Invalid campaign status {status!r}; valid: {', '.join(vocabulary.CAMPAIGN_STATUSES)}")
        with self.store.lock:
            ts = now_iso()
            camp = {
                "id": rng_uuid(self._id_rng),
                "created_at": ts,
                "updated_at": ts,
                "start_date": ts,
                "end_date": None,
                "name": name,
                "description": description,
                "status": status,
                "max_attempts": int(max_attempts),
                "takes_new_leads": bool(takes_new_leads),
            }
            self.store.add_campaign(camp)
            return self.store.get_campaign(camp["id"])  # type: ignore[return-value]

    # -- hooks: auth, errors, request log ---------------------------------------------------------------------

    def authenticate(self, request: Request) -> str:
        key = request.header("x-api-key")
        if not key:
            raise ApiError(401, error_body("UNAUTHORIZED", "Missing API key (x-api-key header)"))
        if not key.startswith(API_KEY_PREFIX) or key not in self.api_keys:
            raise ApiError(401, error_body("UNAUTHORIZED", "Invalid API key"))
        request.principal = self.api_keys[key]
        return key

    def rate_limited_response(self, retry_after: int) -> Response:
        return Response(429, error_body("RATE_LIMIT_EXCEEDED", "Rate limit exceeded", retryAfter=retry_after))

    def fault_response(self, kind: str) -> Response:
        if kind == "503":
            return Response(503, error_body("SERVICE_UNAVAILABLE", "Service temporarily unavailable"))
        return Response(500, error_body("INTERNAL_ERROR", "Internal server error"))

    def not_found_response(self, request: Request) -> Response:
        return Response(404, error_body("NOT_FOUND", f"Route {request.method} {request.path} not found"))

    def bad_json_response(self, request: Request) -> Response:
        return Response(400, error_body("VALIDATION_ERROR", "Request body is not valid JSON", errors=[]))

    def describe_request(self, request: Request) -> dict[str, Any]:
        batch = None
        if request.method == "POST" and request.path.rstrip("/") == "/v2/leads/upload":
            try:
                body = request.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and isinstance(body.get("records"), list):
                records = body["records"]
                batch = {
                    "size": len(records),
                    "external_ids": [r.get("externalId") if isinstance(r, dict) else None for r in records],
                    "fingerprint": batch_fingerprint(body),
                }
        return {"batch": batch}

    # -- routes ---------------------------------------------------------------------------------------------

    def build_routes(self, router: Router) -> None:
        router.add("GET", "/v2/customers", self._list_customers)
        router.add("GET", "/v2/customers/{id}", self._get_customer)
        router.add("GET", "/v2/customers/{id}/calls", self._customer_calls)
        router.add("POST", "/v2/leads/upload", self._upload_leads)
        router.add("GET", "/v2/campaigns", self._list_campaigns)
        router.add("GET", "/v2/campaigns/{id}", self._get_campaign)

    def build_admin_routes(self, router: Router) -> None:
        def status(req: Request) -> Response:
            body = self.admin_body(req)
            try:
                return Response(200, self.set_campaign_status(req.path_params["id"], body["status"]))
            except KeyError as err:
                if "status" not in body:
                    raise ValueError("body needs 'status'") from err
                return Response(404, {"message": str(err)})

        def tick(req: Request) -> Response:
            body = self.admin_body(req)
            placed = self.tick_dialer(int(body.get("steps", 1)), at=body.get("at"))
            return Response(200, {"calls": placed, "counts": self.counts()})

        def add(req: Request) -> Response:
            body = self.admin_body(req)
            if "takesNewLeads" in body:
                body["takes_new_leads"] = body.pop("takesNewLeads")
            if "maxAttempts" in body:
                body["max_attempts"] = body.pop("maxAttempts")
            return Response(200, self.add_campaign(**body))

        def query(req: Request) -> Response:
            return Response(200, {"items": self.query_customers(self.admin_body(req).get("params") or {})})

        def delete(req: Request) -> Response:
            body = self.admin_body(req)
            customers = self.delete_customers(body.get("customers") or [])
            return Response(200, {"customers": customers, "calls": self.delete_calls(body.get("calls") or [])})

        def delete_between(req: Request) -> Response:
            body = self.admin_body(req)
            self.delete_between_pages(
                after=int(body.get("after", 1)),
                customers=body.get("customers") or [],
                calls=body.get("calls") or [],
                path=str(body.get("path") or "/v2/customers"),
            )
            return Response(200, {"ok": True})

        router.add("POST", "/_emulator/campaigns/{id}/status", status)
        router.add("POST", "/_emulator/dialer/tick", tick)
        router.add("POST", "/_emulator/campaigns", add)
        router.add("GET", "/_emulator/campaigns", lambda req: self.list_campaigns())
        router.add("GET", "/_emulator/sources", lambda req: self.sources())
        router.add("GET", "/_emulator/members", lambda req: self.members())
        router.add("GET", "/_emulator/customers/by-external-id", lambda req: self.get_customers_by_external_id())
        router.add("POST", "/_emulator/customers/query", query)
        router.add("POST", "/_emulator/delete", delete)
        router.add("POST", "/_emulator/delete-between-pages", delete_between)

    # -- customers ------------------------------------------------------------------------------------------

    def _customer_query(self, q: dict[str, str]) -> tuple[list[str], list[Any], str, str, int, int]:
        errs = v.QueryErrors()
        page = errs.positive_int(q, "page", 1)
        per_page = errs.positive_int(q, "perPage", 50, 100)
        sort_by = errs.enum(q, "sortBy", tuple(CUSTOMER_SORT_COLUMNS), "createdAt")
        direction = errs.enum(q, "sortDirection", ("asc", "desc"), "desc")
        include_test = errs.boolean(q, "includeTestNumbers")
        has_prior = errs.boolean(q, "hasPriorAttempts")
        member_statuses = errs.enum_list(q, "customerCampaignStatuses", vocabulary.CAMPAIGN_MEMBER_STATUSES)
        policy_statuses = errs.enum_list(q, "policyStatuses", vocabulary.POLICY_STATUSES)
        policy_types = errs.enum_list(q, "policyTypes", vocabulary.POLICY_TYPES)
        statuses = errs.enum_list(q, "statuses", vocabulary.CUSTOMER_STATUSES)
        date_field = errs.enum(q, "dateField", ("createdAt", "effectiveDate", "enrollmentDate"), "createdAt")
        start = errs.date_bound(q, "startDate", end=False)
        end = errs.date_bound(q, "endDate", end=True)
        last_start = errs.date_bound(q, "lastCallStartDate", end=False)
        last_end = errs.date_bound(q, "lastCallEndDate", end=True)
        aging = errs.enum(q, "agingInMonths", ("3", "6", "12"), None)
        if errs.issues:
            raise _validation_error(errs.issues)

        where: list[str] = []
        args: list[Any] = []

        def in_list(column: str, values: list[str]) -> str:
            args.extend(values)
            return f"{column} IN ({','.join('?' for _ in values)})"

        if not include_test:
            where.append("c.test_customer = 0")
        search = (q.get("search") or "").strip()
        if search:
            like = like_pattern(search)
            cols = [
                "c.first_name",
                "c.last_name",
                "(c.first_name || ' ' || c.last_name)",
                "c.email",
                "c.city",
                "c.state",
                "c.county",
                "c.phone",
            ]
            conds = [f"{col} LIKE ? ESCAPE '\\'" for col in cols]
            args.extend([like] * len(cols))
            digits = re.sub(r"\D", "", search)
            if len(digits) >= 3 and digits != search:
                conds.append("c.phone LIKE ?")
                args.append(f"%{digits[-10:] if len(digits) > 10 else digits}%")
            where.append("(" + " OR ".join(conds) + ")")
        source_refs = v.split_list(q.get("sourceIds"))
        if source_refs:
            where.append(in_list("c.current_source_id", self.store.resolve_source_ids(source_refs)))
        campaign_ids = v.split_list(q.get("campaignIds"))
        if campaign_ids:
            where.append(
                "EXISTS (SELECT 1 FROM customer_campaigns cc WHERE cc.customer_id = c.id AND "
                + in_list("cc.campaign_id", campaign_ids)
                + ")"
            )
        if member_statuses:
            where.append(
                "EXISTS (SELECT 1 FROM customer_campaigns cc WHERE cc.customer_id = c.id AND "
                + in_list("cc.status", member_statuses)
                + ")"
            )
        if has_prior is not None:
            cond = "cc.total_calls > 0" if has_prior else "cc.total_calls = 0"
            scope = (" AND " + in_list("cc.campaign_id", campaign_ids)) if campaign_ids else ""
            where.append(f"EXISTS (SELECT 1 FROM customer_campaigns cc WHERE cc.customer_id = c.id AND {cond}{scope})")
        pulse = (q.get("pulseNodeId") or "").strip()
        if pulse:
            where.append(in_list("c.pulse_node_id", v.split_list(pulse)))
        if policy_statuses:
            where.append(
                "EXISTS (SELECT 1 FROM policies p WHERE p.customer_id = c.id AND "
                + in_list("p.status", policy_statuses)
                + ")"
            )
        if policy_types:
            where.append(
                "EXISTS (SELECT 1 FROM policies p WHERE p.customer_id = c.id AND "
                + in_list("p.policy_type", policy_types)
                + ")"
            )
        members = v.split_list(q.get("assignedMemberIds"))
        if members:
            ids = [m for m in members if m != "unassigned"]
            conds = []
            if ids:
                conds.append(in_list("c.assigned_member_id", ids))
            if "unassigned" in members:
                conds.append("c.assigned_member_id IS NULL")
            where.append("(" + " OR ".join(conds) + ")")
        if statuses:
            where.append(in_list("c.status", statuses))
        if start or end:
            if date_field == "createdAt":
                if start:
                    where.append("c.created_at >= ?")
                    args.append(start)
                if end:
                    where.append("c.created_at <= ?")
                    args.append(end)
            else:
                col = "p.effective_date" if date_field == "effectiveDate" else "p.enrollment_date"
                conds = [f"{col} IS NOT NULL"]
                if start:
                    conds.append(f"{col} >= ?")
                    args.append(start[:10])
                if end:
                    conds.append(f"{col} <= ?")
                    args.append(end[:10])
                where.append(f"EXISTS (SELECT 1 FROM policies p WHERE p.customer_id = c.id AND {' AND '.join(conds)})")
        if last_start:
            where.append("c.last_call_date >= ?")
            args.append(last_start)
        if last_end:
            where.append("c.last_call_date <= ?")
            args.append(last_end)
        states = v.split_list(q.get("states"))
        if states:
            where.append(in_list("UPPER(c.state)", [s.upper() for s in states]))
        counties = v.split_list(q.get("counties"))
        if counties:
            where.append(in_list("UPPER(c.county)", [s.upper() for s in counties]))
        if aging:
            today = datetime.now(timezone.utc).date()
            where.append("c.turns65 >= ? AND c.turns65 <= ?")
            args.extend([today.isoformat(), add_months(today, int(aging)).isoformat()])
        return where, args, CUSTOMER_SORT_COLUMNS[sort_by], direction, page, per_page  # type: ignore[index]

    def _list_customers(self, req: Request) -> dict[str, Any]:
        where, args, sort_col, direction, page, per_page = self._customer_query(req.query)
        with self.store.lock:
            total, ids = self.store.query_customer_ids(
                where, args, sort_col, direction, per_page, (page - 1) * per_page
            )
            items = self.store.customers_by_ids(ids)
        self._page_answered(req.path)
        return envelope(items, total, page, per_page)

    def _get_customer(self, req: Request) -> dict[str, Any]:
        cid = req.path_params["id"]
        _require_uuid(cid)
        item = self.store.get_customer(cid)
        if item is None:
            raise ApiError(404, error_body("NOT_FOUND", "Customer not found"))
        return item

    def _customer_calls(self, req: Request) -> dict[str, Any]:
        cid = req.path_params["id"]
        errs = v.QueryErrors()
        if not v.UUID_RE.match(cid):
            errs.issues.append(v.issue(["id"], "Invalid uuid", "uuid", cid, "invalid_string"))
        page = errs.positive_int(req.query, "page", 1)
        per_page = errs.positive_int(req.query, "perPage", 50, 100)
        sort_by = errs.enum(req.query, "sortBy", ("createdAt", "disposition", "duration"), "createdAt")
        direction = errs.enum(req.query, "sortDirection", ("asc", "desc"), "desc")
        if errs.issues:
            raise _validation_error(errs.issues)
        with self.store.lock:
            if self.store.customer_row(cid) is None:
                raise ApiError(404, error_body("NOT_FOUND", "Customer not found"))
            total, items = self.store.customer_calls(cid, sort_by, direction, per_page, (page - 1) * per_page)  # type: ignore[arg-type]
        self._page_answered(req.path)
        return envelope(items, total, page, per_page)

    # -- campaigns ------------------------------------------------------------------------------------------

    def _list_campaigns(self, req: Request) -> dict[str, Any]:
        errs = v.QueryErrors()
        page = errs.positive_int(req.query, "page", 1)
        per_page = errs.positive_int(req.query, "perPage", 50, 100)
        sort_by = errs.enum(req.query, "sortBy", ("createdAt", "updatedAt", "name", "status", "startDate"), "createdAt")
        direction = errs.enum(req.query, "sortDirection", ("asc", "desc"), "desc")
        status = errs.enum(req.query, "status", vocabulary.CAMPAIGN_STATUSES, None)
        if errs.issues:
            raise _validation_error(errs.issues)
        search = (req.query.get("search") or "").strip() or None
        total, items = self.store.query_campaigns(status, search, sort_by, direction, per_page, (page - 1) * per_page)  # type: ignore[arg-type]
        return envelope(items, total, page, per_page)

    def _get_campaign(self, req: Request) -> dict[str, Any]:
        cid = req.path_params["id"]
        _require_uuid(cid, "campaignId")
        item = self.store.get_campaign(cid)
        if item is None:
            raise ApiError(404, error_body("NOT_FOUND", "Campaign not found"))
        return {"campaign": item}

    # -- leads ----------------------------------------------------------------------------------------------

    def _upload_leads(self, req: Request) -> dict[str, Any]:
        if req.principal != "write":
            raise ApiError(403, error_body("FORBIDDEN", "API key lacks permission for leads:write"))
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError):
            raise _validation_error(
                [v.issue([], "Invalid JSON body", "object", "invalid json", "invalid_type")], failedRecords=[]
            ) from None
        records, issues, failed = v.validate_upload_body(body)
        if issues:
            raise _validation_error(issues, failedRecords=failed)
        succeeded, errors, results = 0, [], []
        with self.store.lock:
            self.store.db.execute("BEGIN")
            try:
                campaigns_for_new = self.store.new_lead_campaign_ids()
                for record in records:
                    source = None
                    if record.get("sourceId") is not None:
                        source = self.store.find_source(record["sourceId"])
                        if source is None:
                            errors.append(
                                {"id": None, "externalId": record.get("externalId"), "error": "Source not found"}
                            )
                            continue
                    customer_id = self._upsert_lead(record, source, campaigns_for_new)
                    succeeded += 1
                    results.append(customer_id)
                self.store.leads_uploaded += succeeded
                self.store.db.execute("COMMIT")
            except BaseException:
                self.store.db.execute("ROLLBACK")
                raise
            items = {i["id"]: i for i in self.store.customers_by_ids(list(dict.fromkeys(results)))}
        return {
            "succeeded": succeeded,
            "failed": len(errors),
            "errors": errors,
            "results": [items[cid] for cid in results],
        }

    def _upsert_lead(self, record: dict[str, Any], source: Any, campaigns_for_new: list[str]) -> str:
        store = self.store
        phone = v.phone_digits(record["phoneNumber"])
        external_id = record.get("externalId") or None
        existing_id = store.find_customer_for_lead(external_id, phone)
        ts = now_iso()
        values: dict[str, Any] = {"phone": phone, "updated_at": ts}
        for field, column in LEAD_COLUMNS.items():
            if field in record:
                values[column] = record[field]
        if "dateOfBirth" in record:
            dob = record["dateOfBirth"]
            values["dob"] = v.dob_to_iso(dob) if dob else None
            try:
                values["turns65"] = turns_65(date.fromisoformat(values["dob"])).isoformat() if dob else None
            except ValueError:
                values["turns65"] = None
        if source is not None:
            values["current_source_id"] = source["id"]
        for field, column in FLAG_COLUMNS.items():  # stored as sent; a flag left out keeps its value
            if record.get(field) is not None:
                values[column] = int(bool(record[field]))
        extra_fields = {k: val for k, val in record.items() if k not in LEAD_COLUMNS and k not in LEAD_SPECIAL}
        if existing_id is None:
            cid = rng_uuid(self._id_rng)
            values.update(
                id=cid,
                created_at=ts,
                status="Lead",
                original_source_id=values.get("current_source_id"),
                extra=json.dumps(extra_fields),
                custom_fields=json.dumps(record.get("customFields") or []),
            )
            store.insert_customer(values, campaigns_for_new)
            return cid
        row = store.customer_row(existing_id)
        if extra_fields:
            extra = json.loads(row["extra"])
            extra.update(extra_fields)
            values["extra"] = json.dumps(extra)
        if record.get("customFields"):
            merged = {f["fieldKey"]: f for f in json.loads(row["custom_fields"])}
            for f in record["customFields"]:
                merged[f["fieldKey"]] = {"fieldKey": f["fieldKey"], "value": f.get("value")}
            values["custom_fields"] = json.dumps(list(merged.values()))
        store.update_customer(existing_id, values)
        return existing_id


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set)):
        return ",".join(_param_text(x) for x in value)
    return str(value)
