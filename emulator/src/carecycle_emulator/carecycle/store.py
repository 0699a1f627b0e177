"""SQLite storage of the careCycle emulator: schema, queries, lead upsert and dialer steps.

One in-memory connection (``check_same_thread=False``) guarded by a re-entrant lock; every public method holds it.
Timestamps are stored as ISO-8601 UTC strings (``YYYY-MM-DDTHH:MM:SS.mmmZ``) so they compare lexicographically.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from carecycle_emulator.carecycle.vocabulary import DO_NOT_CALL_DISPOSITION, STATUS_COUNT_KEYS

SCHEMA = """
CREATE TABLE sources (
    id TEXT PRIMARY KEY, source_id TEXT UNIQUE NOT NULL, name TEXT NOT NULL, default_lead_cost REAL
);
CREATE TABLE members (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL);
CREATE TABLE campaigns (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    start_date TEXT, end_date TEXT, name TEXT NOT NULL, description TEXT, status TEXT NOT NULL,
    max_attempts INTEGER NOT NULL, takes_new_leads INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE customers (
    id TEXT NOT NULL, seq INTEGER PRIMARY KEY, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    status TEXT NOT NULL, first_name TEXT, last_name TEXT, email TEXT, phone TEXT NOT NULL,
    dob TEXT, turns65 TEXT, gender TEXT, marital_status TEXT, postal_code TEXT, timezone TEXT,
    state TEXT, city TEXT, county TEXT, address TEXT, address2 TEXT, mbi TEXT, external_id TEXT,
    current_source_id TEXT, original_source_id TEXT, assigned_member_id TEXT, pulse_node_id TEXT,
    test_customer INTEGER NOT NULL DEFAULT 0, total_calls INTEGER NOT NULL DEFAULT 0,
    last_call_date TEXT, last_call_disposition TEXT, extra TEXT NOT NULL DEFAULT '{}',
    custom_fields TEXT NOT NULL DEFAULT '[]', do_not_call INTEGER NOT NULL DEFAULT 0,
    do_not_sms INTEGER NOT NULL DEFAULT 0, do_not_email INTEGER NOT NULL DEFAULT 0,
    do_not_mail INTEGER NOT NULL DEFAULT 0
);
"""

INDEXES = """
CREATE UNIQUE INDEX ix_customers_id ON customers (id);
CREATE INDEX ix_customers_created ON customers (test_customer, created_at, seq, id);
CREATE INDEX ix_customers_external ON customers (external_id);
CREATE INDEX ix_customers_phone ON customers (phone);
CREATE INDEX ix_customers_last_call ON customers (last_call_date);
"""

SCHEMA += """
CREATE TABLE customer_campaigns (
    customer_id TEXT NOT NULL, campaign_id TEXT NOT NULL, status TEXT NOT NULL,
    total_calls INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
"""

INDEXES += """
CREATE UNIQUE INDEX ix_cc_pk ON customer_campaigns (customer_id, campaign_id);
CREATE INDEX ix_cc_campaign ON customer_campaigns (campaign_id, status);
"""

SCHEMA += """
CREATE TABLE policies (
    id TEXT NOT NULL, customer_id TEXT NOT NULL, policy_type TEXT NOT NULL, status TEXT NOT NULL,
    carrier_name TEXT, plan_name TEXT, effective_date TEXT, enrollment_date TEXT, created_at TEXT NOT NULL
);
"""

INDEXES += """
CREATE INDEX ix_policies_customer ON policies (customer_id);
"""

SCHEMA += """
CREATE TABLE calls (
    id TEXT NOT NULL, seq INTEGER PRIMARY KEY, customer_id TEXT NOT NULL, campaign_id TEXT, created_at TEXT NOT NULL,
    disposition TEXT, duration_ms INTEGER NOT NULL, direction TEXT NOT NULL, caller_id TEXT, summary TEXT,
    success_evaluation TEXT, test_flag INTEGER NOT NULL DEFAULT 0
);
"""

INDEXES += """
CREATE UNIQUE INDEX ix_calls_id ON calls (id);
CREATE INDEX ix_calls_customer ON calls (customer_id, created_at);
CREATE INDEX ix_calls_campaign ON calls (campaign_id, created_at);
"""

#: the one careCycle client (agency) every emulated record belongs to
CLIENT_ID = "5e505642-9024-474d-9434-e5a44f505cc5"

CUSTOMER_COLUMNS = (
    "id, seq, created_at, updated_at, status, first_name, last_name, email, phone, dob, turns65, gender, "
    "marital_status, postal_code, timezone, state, city, county, address, address2, mbi, external_id, "
    "current_source_id, original_source_id, assigned_member_id, pulse_node_id, test_customer, total_calls, "
    "last_call_date, last_call_disposition, extra, custom_fields"
)
CUSTOMER_COLUMN_LIST = [c.strip() for c in CUSTOMER_COLUMNS.split(",")]
#: the do-not-contact flags: lead/customer field -> customers column (0/1, default 0; seeded rows leave them unset,
#: except a customer one of whose calls ended "Do Not Call")
FLAG_COLUMNS = {
    "doNotCall": "do_not_call",
    "doNotSMS": "do_not_sms",
    "doNotEmail": "do_not_email",
    "doNotMail": "do_not_mail",
}

CALL_COLUMNS = (
    "id, seq, customer_id, campaign_id, created_at, disposition, duration_ms, direction, caller_id, summary, "
    "success_evaluation, test_flag"
)


CUSTOMER_SORT_COLUMNS = {
    "createdAt": "c.created_at",
    "firstName": "c.first_name",
    "lastName": "c.last_name",
    "callerId": "c.phone",
}
CALL_SORT_COLUMNS = {"createdAt": "created_at", "disposition": "disposition", "duration": "duration_ms"}
CAMPAIGN_SORT_COLUMNS = {
    "createdAt": "created_at",
    "updatedAt": "updated_at",
    "name": "name",
    "status": "status",
    "startDate": "start_date",
}


#: from this OFFSET on, customer queries sort all matching ids once and slice pages from the cached list
DEEP_PAGE_OFFSET = 2000


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def now_iso() -> str:
    return iso(datetime.now(timezone.utc))


def e164(phone_digits: str) -> str:
    return "+1" + phone_digits


class Store:
    """All emulator data, in one in-memory SQLite database."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.leads_uploaded = 0
        self._seq = 0
        self._call_seq = 0
        self._campaign_seq = 0
        self.version = 0  # bumped on every write; keys the COUNT cache
        self._count_cache: dict[tuple, int] = {}
        self._ids_cache: dict[tuple, list[str]] = {}
        self.wipe()
        self.db.executescript(INDEXES)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def wipe(self) -> None:
        with self.lock:
            self.db.close()
            self.db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=OFF")
            self.db.execute("PRAGMA synchronous=OFF")
            self.db.executescript(SCHEMA)  # indexes come after the bulk load (see bulk_load)
            self.leads_uploaded = 0
            self._seq = self._call_seq = self._campaign_seq = 0
            self.touch()

    def touch(self) -> None:
        """Note a write: invalidates cached counts."""
        self.version += 1
        self._count_cache.clear()
        self._ids_cache.clear()

    def bulk_load(
        self,
        *,
        sources: Sequence[tuple],
        members: Sequence[tuple],
        campaigns: Sequence[dict[str, Any]],
        customers: Sequence[tuple],  # in CUSTOMER_COLUMN_LIST order
        memberships: Sequence[tuple],
        policies: Sequence[tuple],
        calls: Sequence[tuple],
    ) -> None:
        """Insert seed rows in one transaction (``executemany``)."""
        with self.lock:
            db = self.db
            db.execute("BEGIN")
            try:
                db.executemany("INSERT INTO sources VALUES (?, ?, ?, ?)", sources)
                db.executemany("INSERT INTO members VALUES (?, ?, ?)", members)
                for camp in campaigns:
                    self._insert_campaign(camp)
                placeholders = ", ".join("?" for _ in CUSTOMER_COLUMN_LIST)
                db.executemany(
                    f"INSERT INTO customers ({CUSTOMER_COLUMNS}) VALUES ({placeholders})",
                    customers,
                )
                self._seq = max((row[1] for row in customers), default=0)
                db.executemany("INSERT INTO customer_campaigns VALUES (?, ?, ?, ?, ?, ?)", memberships)
                db.executemany("INSERT INTO policies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", policies)
                db.executemany(f"INSERT INTO calls ({CALL_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", calls)
                self._call_seq = max((row[1] for row in calls), default=0)
                db.executescript(INDEXES)  # commits
                db.execute(
                    "UPDATE customers SET do_not_call = 1 "
                    "WHERE id IN (SELECT customer_id FROM calls WHERE disposition = ?)",
                    (DO_NOT_CALL_DISPOSITION,),
                )
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("PRAGMA analysis_limit=1000")
            db.execute("ANALYZE")
            self.touch()

    def snapshot(self) -> tuple[sqlite3.Connection, tuple[int, int, int]]:
        """A copy of the database (and sequence counters), for :meth:`restore`."""
        with self.lock:
            copy = sqlite3.connect(":memory:", check_same_thread=False)
            self.db.backup(copy)
            return copy, (self._seq, self._call_seq, self._campaign_seq)

    def restore(self, snap: tuple[sqlite3.Connection, tuple[int, int, int]]) -> None:
        copy, seqs = snap
        with self.lock:
            self.wipe()
            copy.backup(self.db)
            self._seq, self._call_seq, self._campaign_seq = seqs
            self.touch()

    def _insert_campaign(self, camp: dict[str, Any]) -> None:
        self.touch()
        self._campaign_seq += 1
        self.db.execute(
            "INSERT INTO campaigns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                camp["id"],
                self._campaign_seq,
                camp["created_at"],
                camp["updated_at"],
                camp.get("start_date"),
                camp.get("end_date"),
                camp["name"],
                camp.get("description"),
                camp["status"],
                int(camp.get("max_attempts", 3)),
                1 if camp.get("takes_new_leads") else 0,
            ),
        )

    # -- counts ---------------------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self.lock:
            one = self.db.execute
            return {
                "customers": one("SELECT COUNT(*) FROM customers").fetchone()[0],
                "campaigns": one("SELECT COUNT(*) FROM campaigns").fetchone()[0],
                "calls": one("SELECT COUNT(*) FROM calls").fetchone()[0],
                "leads_uploaded": self.leads_uploaded,
            }

    # -- sources / members ----------------------------------------------------------------------------------

    def find_source(self, source_ref: str) -> sqlite3.Row | None:
        """A source by its public ``sourceId`` or its UUID."""
        with self.lock:
            return self.db.execute(
                "SELECT * FROM sources WHERE source_id = ? OR id = ?", (source_ref, source_ref)
            ).fetchone()

    def sources(self) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute("SELECT * FROM sources ORDER BY rowid").fetchall()
        return [{"id": r["id"], "sourceId": r["source_id"], "name": r["name"]} for r in rows]

    def members(self) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute("SELECT * FROM members ORDER BY rowid").fetchall()
        return [{"id": r["id"], "name": r["name"], "email": r["email"]} for r in rows]

    def resolve_source_ids(self, refs: Iterable[str]) -> list[str]:
        """Map public ``sourceId`` values and UUIDs to source UUIDs (unknown refs are kept, matching nothing)."""
        out = []
        for ref in refs:
            row = self.find_source(ref)
            out.append(row["id"] if row else ref)
        return out

    # -- customers ------------------------------------------------------------------------------------------

    def query_customer_ids(
        self, where: list[str], params: list[Any], sort_col: str, direction: str, limit: int | None, offset: int
    ) -> tuple[int, list[str]]:
        """Total matching and one page of ids, given SQL conditions over alias ``c``."""
        where_sql = (" WHERE " + " AND ".join(where)) if where else ""
        direction = "DESC" if direction == "desc" else "ASC"
        order = f"{sort_col} {direction}, c.seq {direction}"
        with self.lock:
            key = (where_sql, tuple(params))
            total = self._count_cache.get(key)
            if total is None:
                total = self.db.execute(f"SELECT COUNT(*) FROM customers c{where_sql}", params).fetchone()[0]
                if len(self._count_cache) > 1000:
                    self._count_cache.clear()
                self._count_cache[key] = total
            order_key = (where_sql, tuple(params), order)
            cached = self._ids_cache.get(order_key)
            if cached is None and (limit is None or offset >= DEEP_PAGE_OFFSET):
                # deep pages: sort once, then slice (OFFSET scans get slow on big seeds)
                sql = f"SELECT c.id FROM customers c{where_sql} ORDER BY {order}"
                cached = [r[0] for r in self.db.execute(sql, params)]
                if len(self._ids_cache) >= 8:
                    self._ids_cache.clear()
                self._ids_cache[order_key] = cached
            if cached is not None:
                return total, cached[offset:] if limit is None else cached[offset : offset + limit]
            sql = f"SELECT c.id FROM customers c{where_sql} ORDER BY {order} LIMIT ? OFFSET ?"
            rows = self.db.execute(sql, [*params, limit, offset]).fetchall()
        return total, [r[0] for r in rows]

    def customers_by_ids(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Rendered customer items, in the order of ``ids``."""
        if not ids:
            return []
        with self.lock:
            out: list[dict[str, Any]] = []
            for start in range(0, len(ids), 500):
                out.extend(self._render_customers(ids[start : start + 500]))
            return out

    def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        items = self.customers_by_ids([customer_id])
        return items[0] if items else None

    def _render_customers(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        db = self.db
        marks = ",".join("?" for _ in ids)
        rows = {r["id"]: r for r in db.execute(f"SELECT * FROM customers WHERE id IN ({marks})", list(ids))}
        camps: dict[str, list[dict[str, Any]]] = {}
        for r in db.execute(
            "SELECT cc.customer_id, cc.status, cc.total_calls, cc.created_at, ca.id, ca.name, ca.status AS cstatus "
            f"FROM customer_campaigns cc JOIN campaigns ca ON ca.id = cc.campaign_id WHERE cc.customer_id IN ({marks}) "
            "ORDER BY ca.seq",
            list(ids),
        ):
            camps.setdefault(r["customer_id"], []).append(
                {
                    "id": r["id"],
                    "name": r["name"],
                    "status": r["status"],
                    "campaignStatus": r["cstatus"],
                    "totalCalls": r["total_calls"],
                    "addedAt": r["created_at"],
                }
            )
        pols: dict[str, list[dict[str, Any]]] = {}
        for r in db.execute(
            f"SELECT * FROM policies WHERE customer_id IN ({marks}) ORDER BY created_at, id", list(ids)
        ):
            pols.setdefault(r["customer_id"], []).append(
                {
                    "id": r["id"],
                    "policyType": r["policy_type"],
                    "status": r["status"],
                    "carrierName": r["carrier_name"],
                    "planName": r["plan_name"],
                    "effectiveDate": r["effective_date"],
                    "enrollmentDate": r["enrollment_date"],
                    "createdAt": r["created_at"],
                }
            )
        sources = {r["id"]: r for r in db.execute("SELECT * FROM sources")}
        members = {r["id"]: r for r in db.execute("SELECT * FROM members")}
        out = []
        for cid in ids:
            row = rows.get(cid)
            if row is not None:
                out.append(_render_customer(row, camps.get(cid, []), pols.get(cid, []), sources, members))
        return out

    def customers_by_external_id(self) -> dict[str, list[dict[str, Any]]]:
        with self.lock:
            rows = self.db.execute(
                "SELECT id, external_id FROM customers WHERE external_id IS NOT NULL ORDER BY seq"
            ).fetchall()
            items = {i["id"]: i for i in self.customers_by_ids([r["id"] for r in rows])}
        out: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            out.setdefault(r["external_id"], []).append(items[r["id"]])
        return out

    # -- calls ----------------------------------------------------------------------------------------------

    def customer_calls(
        self, customer_id: str, sort_by: str, direction: str, limit: int, offset: int
    ) -> tuple[int, list[dict[str, Any]]]:
        col = CALL_SORT_COLUMNS[sort_by]
        d = "DESC" if direction == "desc" else "ASC"
        with self.lock:
            total = self.db.execute("SELECT COUNT(*) FROM calls WHERE customer_id = ?", (customer_id,)).fetchone()[0]
            rows = self.db.execute(
                f"SELECT * FROM calls WHERE customer_id = ? ORDER BY {col} {d}, seq {d} LIMIT ? OFFSET ?",
                (customer_id, limit, offset),
            ).fetchall()
            test = self.db.execute(
                "SELECT test_customer, current_source_id FROM customers WHERE id = ?", (customer_id,)
            )
            crow = test.fetchone()
            source_name = None
            if crow and crow["current_source_id"]:
                srow = self.db.execute("SELECT name FROM sources WHERE id = ?", (crow["current_source_id"],)).fetchone()
                source_name = srow["name"] if srow else None
        is_test = bool(crow["test_customer"]) if crow else False
        return total, [_render_call(r, is_test, source_name) for r in rows]

    def add_call(
        self,
        *,
        call_id: str,
        customer_id: str,
        campaign_id: str | None,
        created_at: str,
        disposition: str,
        duration_ms: int,
        summary: str,
        success: str,
    ) -> None:
        with self.lock:
            self.touch()
            self._call_seq += 1
            caller = self.db.execute(
                "SELECT phone, test_customer FROM customers WHERE id = ?", (customer_id,)
            ).fetchone()
            self.db.execute(
                f"INSERT INTO calls ({CALL_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    call_id,
                    self._call_seq,
                    customer_id,
                    campaign_id,
                    created_at,
                    disposition,
                    duration_ms,
                    "outbound",
                    e164(caller["phone"]),
                    summary,
                    success,
                    caller["test_customer"],
                ),
            )
            # a call placed back in time (the dialer's ``at``) does not move the last call backwards
            self.db.execute(
                "UPDATE customers SET total_calls = total_calls + 1, "
                "last_call_disposition = CASE WHEN last_call_date > ? THEN last_call_disposition ELSE ? END, "
                "last_call_date = MAX(COALESCE(last_call_date, ''), ?), updated_at = MAX(updated_at, ?), "
                "do_not_call = MAX(do_not_call, ?) WHERE id = ?",
                (
                    created_at,
                    disposition,
                    created_at,
                    created_at,
                    int(disposition == DO_NOT_CALL_DISPOSITION),
                    customer_id,
                ),
            )
            if disposition == DO_NOT_CALL_DISPOSITION:  # no campaign dials them again
                self.db.execute(
                    "UPDATE customer_campaigns SET status = 'skipped', updated_at = ? WHERE customer_id = ? "
                    "AND status IN ('pending', 'awaiting_call', 'in_progress')",
                    (created_at, customer_id),
                )

    # -- lead upsert ----------------------------------------------------------------------------------------

    def find_customer_for_lead(self, external_id: str | None, phone: str) -> str | None:
        with self.lock:
            if external_id:
                row = self.db.execute(
                    "SELECT id FROM customers WHERE external_id = ? ORDER BY seq LIMIT 1", (external_id,)
                ).fetchone()
            else:
                row = self.db.execute(
                    "SELECT id FROM customers WHERE phone = ? ORDER BY seq LIMIT 1", (phone,)
                ).fetchone()
            return row[0] if row else None

    def insert_customer(self, values: dict[str, Any], join_campaign_ids: Iterable[str] = ()) -> None:
        with self.lock:
            self.touch()
            self._seq += 1
            row = dict.fromkeys(CUSTOMER_COLUMN_LIST)
            row.update({"seq": self._seq, "test_customer": 0, "total_calls": 0, "extra": "{}", "custom_fields": "[]"})
            row.update(values)
            columns = [*CUSTOMER_COLUMN_LIST, *(c for c in FLAG_COLUMNS.values() if values.get(c) is not None)]
            marks = ",".join("?" for _ in columns)
            self.db.execute(f"INSERT INTO customers ({', '.join(columns)}) VALUES ({marks})", [row[c] for c in columns])
            for camp_id in join_campaign_ids:
                self.db.execute(
                    "INSERT OR IGNORE INTO customer_campaigns VALUES (?, ?, 'pending', 0, ?, ?)",
                    (row["id"], camp_id, row["created_at"], row["created_at"]),
                )

    def update_customer(self, customer_id: str, values: dict[str, Any]) -> None:
        if not values:
            return
        with self.lock:
            self.touch()
            cols = ", ".join(f"{k} = ?" for k in values)
            self.db.execute(f"UPDATE customers SET {cols} WHERE id = ?", [*values.values(), customer_id])

    def delete_customers(self, customer_ids: Iterable[str]) -> int:
        """Delete customers with their campaign memberships, policies and calls; return how many existed."""
        ids = list(dict.fromkeys(customer_ids))
        if not ids:
            return 0
        marks = ",".join("?" for _ in ids)
        with self.lock:
            self.touch()
            for table in ("customer_campaigns", "policies", "calls"):
                self.db.execute(f"DELETE FROM {table} WHERE customer_id IN ({marks})", ids)
            return self.db.execute(f"DELETE FROM customers WHERE id IN ({marks})", ids).rowcount

    def delete_calls(self, call_ids: Iterable[str]) -> int:
        """Delete calls (their customers' ``totalCalls`` go down with them); return how many existed."""
        ids = list(dict.fromkeys(call_ids))
        if not ids:
            return 0
        marks = ",".join("?" for _ in ids)
        with self.lock:
            self.touch()
            owners = [
                r[0] for r in self.db.execute(f"SELECT DISTINCT customer_id FROM calls WHERE id IN ({marks})", ids)
            ]
            deleted = self.db.execute(f"DELETE FROM calls WHERE id IN ({marks})", ids).rowcount
            for owner in owners:
                self.db.execute(
                    "UPDATE customers SET total_calls = (SELECT COUNT(*) FROM calls WHERE customer_id = ?) "
                    "WHERE id = ?",
                    (owner, owner),
                )
            return deleted

    def customer_row(self, customer_id: str) -> sqlite3.Row | None:
        with self.lock:
            return self.db.execute("SELECT * FROM customers WHERE id = ?", (customer_id,)).fetchone()

    def new_lead_campaign_ids(self) -> list[str]:
        with self.lock:
            return [r[0] for r in self.db.execute("SELECT id FROM campaigns WHERE takes_new_leads = 1 ORDER BY seq")]

    # -- campaigns ------------------------------------------------------------------------------------------

    def query_campaigns(
        self, status: str | None, search: str | None, sort_by: str, direction: str, limit: int | None, offset: int
    ) -> tuple[int, list[dict[str, Any]]]:
        where, params = [], []
        if status:
            where.append("status = ?")
            params.append(status)
        if search:
            where.append("(name LIKE ? ESCAPE '\\' OR description LIKE ? ESCAPE '\\')")
            like = like_pattern(search)
            params += [like, like]
        where_sql = (" WHERE " + " AND ".join(where)) if where else ""
        d = "DESC" if direction == "desc" else "ASC"
        col = CAMPAIGN_SORT_COLUMNS[sort_by]
        with self.lock:
            total = self.db.execute(f"SELECT COUNT(*) FROM campaigns{where_sql}", params).fetchone()[0]
            page_sql = "" if limit is None else " LIMIT ? OFFSET ?"
            page_params = [] if limit is None else [limit, offset]
            rows = self.db.execute(
                f"SELECT * FROM campaigns{where_sql} ORDER BY {col} {d}, seq {d}{page_sql}", [*params, *page_params]
            ).fetchall()
            return total, self._render_campaigns(rows)

    def get_campaign(self, campaign_id: str) -> dict[str, Any] | None:
        with self.lock:
            rows = self.db.execute("SELECT * FROM campaigns WHERE id = ?", (campaign_id,)).fetchall()
            items = self._render_campaigns(rows)
        return items[0] if items else None

    def _render_campaigns(self, rows: Sequence[sqlite3.Row]) -> list[dict[str, Any]]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        marks = ",".join("?" for _ in ids)
        stats: dict[str, dict[str, Any]] = {
            i: {"total": 0, "totalCalls": 0, "todayCalls": 0, "statusCounts": dict.fromkeys(STATUS_COUNT_KEYS, 0)}
            for i in ids
        }
        for r in self.db.execute(
            f"SELECT campaign_id, status, COUNT(*) FROM customer_campaigns WHERE campaign_id IN ({marks}) "
            "GROUP BY campaign_id, status",
            ids,
        ):
            s = stats[r[0]]
            s["total"] += r[2]
            if r[1] in s["statusCounts"]:
                s["statusCounts"][r[1]] += r[2]
        today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        for r in self.db.execute(
            f"SELECT campaign_id, COUNT(*), SUM(created_at >= ?) FROM calls WHERE campaign_id IN ({marks}) "
            "GROUP BY campaign_id",
            [today, *ids],
        ):
            stats[r[0]]["totalCalls"] = r[1]
            stats[r[0]]["todayCalls"] = r[2] or 0
        return [_render_campaign(r, stats[r["id"]]) for r in rows]

    def add_campaign(self, camp: dict[str, Any]) -> None:
        with self.lock:
            self._insert_campaign(camp)

    def set_campaign_status(self, campaign_id: str, status: str) -> bool:
        with self.lock:
            self.touch()
            cur = self.db.execute(
                "UPDATE campaigns SET status = ?, updated_at = ? WHERE id = ?", (status, now_iso(), campaign_id)
            )
            return cur.rowcount > 0

    def active_campaigns(self) -> list[sqlite3.Row]:
        with self.lock:
            return self.db.execute("SELECT * FROM campaigns WHERE status = 'active' ORDER BY seq").fetchall()

    def skip_do_not_call(self, campaign_id: str, ts: str) -> int:
        """Move the campaign's members still to be dialed who carry ``doNotCall`` to ``skipped`` (no call); return
        how many."""
        with self.lock:
            cur = self.db.execute(
                "UPDATE customer_campaigns SET status = 'skipped', updated_at = ? WHERE campaign_id = ? "
                "AND status IN ('pending', 'awaiting_call', 'in_progress') "
                "AND customer_id IN (SELECT id FROM customers WHERE do_not_call = 1)",
                (ts, campaign_id),
            )
            if cur.rowcount:
                self.touch()
            return cur.rowcount

    def dialable_members(self, campaign_id: str, limit: int) -> list[sqlite3.Row]:
        """Up to ``limit`` members to dial next; never one that carries ``doNotCall``."""
        with self.lock:
            return self.db.execute(
                "SELECT cc.customer_id, cc.status, cc.total_calls FROM customer_campaigns cc "
                "JOIN customers c ON c.id = cc.customer_id "
                "WHERE cc.campaign_id = ? AND cc.status IN ('pending', 'awaiting_call', 'in_progress') "
                "AND c.do_not_call = 0 "
                "ORDER BY cc.total_calls, c.seq LIMIT ?",
                (campaign_id, limit),
            ).fetchall()

    def set_member_status(self, customer_id: str, campaign_id: str, status: str, add_calls: int, ts: str) -> None:
        with self.lock:
            self.touch()
            self.db.execute(
                "UPDATE customer_campaigns SET status = ?, total_calls = total_calls + ?, updated_at = ? "
                "WHERE customer_id = ? AND campaign_id = ?",
                (status, add_calls, ts, customer_id, campaign_id),
            )


def like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _render_customer(
    row: sqlite3.Row,
    campaigns: list[dict[str, Any]],
    policies: list[dict[str, Any]],
    sources: dict[str, sqlite3.Row],
    members: dict[str, sqlite3.Row],
) -> dict[str, Any]:
    extra = json.loads(row["extra"])
    src = sources.get(row["current_source_id"]) if row["current_source_id"] else None
    member = members.get(row["assigned_member_id"]) if row["assigned_member_id"] else None
    first_policy = policies[0] if policies else {}
    phone = e164(row["phone"])
    item: dict[str, Any] = {
        "id": row["id"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "clientId": CLIENT_ID,
        "clientCustomerId": row["external_id"],
        "externalId": row["external_id"],
        "status": row["status"],
        "firstName": row["first_name"],
        "lastName": row["last_name"],
        "callerId": phone,
        "phoneNumber": phone,
        "email": row["email"],
        "dateOfBirth": row["dob"],
        "gender": row["gender"],
        "maritalStatus": row["marital_status"],
        "postalCode": row["postal_code"],
        "timezone": row["timezone"],
        "state": row["state"],
        "city": row["city"],
        "county": row["county"],
        "address": row["address"],
        "address2": row["address2"],
        "mbiNumber": row["mbi"],
        "currentSourceId": row["current_source_id"],
        "originalSourceId": row["original_source_id"],
        "memberId": row["assigned_member_id"],
        "pulseNodeId": row["pulse_node_id"],
        "carrierName": first_policy.get("carrierName"),
        "planName": first_policy.get("planName"),
        "enrollmentDate": first_policy.get("enrollmentDate"),
        "effectiveDate": first_policy.get("effectiveDate"),
        "testCustomer": bool(row["test_customer"]),
        "totalCalls": row["total_calls"],
        "lastCallDate": row["last_call_date"],
        "lastCallDisposition": row["last_call_disposition"],
        **{field: bool(row[column]) for field, column in FLAG_COLUMNS.items()},
        "campaigns": campaigns,
        "source": {"id": src["id"], "name": src["name"], "sourceId": src["source_id"]} if src else None,
        "customFields": json.loads(row["custom_fields"]),
        "policies": policies,
        "prescriptions": [],
        "providers": [],
        "scopeOfAppointments": [],
        "dependents": [],
        "assignedMember": (
            {"id": member["id"], "name": member["name"], "email": member["email"], "image": None} if member else None
        ),
    }
    for key, value in extra.items():
        item.setdefault(key, value)
    return item


def _render_call(row: sqlite3.Row, is_test: bool, source_name: str | None) -> dict[str, Any]:
    return {
        "id": row["id"],
        "campaignId": row["campaign_id"],
        "disposition": row["disposition"],
        "callerId": row["caller_id"],
        "twilioSid": "CA" + row["id"].replace("-", "")[:32],
        "service": "vapi",
        "testFlag": bool(row["test_flag"]),
        "direction": row["direction"],
        "recordingUrl": None,
        "recordingId": None,
        "stereoRecordingUrl": None,
        "assistantType": "outbound",
        "successEvaluation": row["success_evaluation"],
        "summary": row["summary"],
        "transcript": None,
        "durationMs": row["duration_ms"],
        "createdAt": row["created_at"],
        "mainRecordingUrl": None,
        "isTestNumber": is_test,
        "sourceName": source_name,
    }


def _render_campaign(row: sqlite3.Row, stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "startDate": row["start_date"],
        "endDate": row["end_date"],
        "dialAfterhours": False,
        "name": row["name"],
        "description": row["description"],
        "status": row["status"],
        "sourceType": "leads",
        "enablePulse": False,
        "maxConcurrentCalls": 5,
        "suite": "sales",
        "maxAttempts": row["max_attempts"],
        "requiredVars": [],
        "hasInquiryCallback": False,
        "takesNewLeads": bool(row["takes_new_leads"]),
        "customerStats": stats,
    }
