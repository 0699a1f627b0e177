"""Deterministic seed data for the careCycle emulator (fixed word lists, one seeded RNG, no network).

The same ``seed``, ``customers`` and ``campaigns`` give the same rows. Dates are relative to the current UTC day
(so "last 30 days" and aging-in filters find data), hence identical within one UTC day.
Sources, members and Pulse nodes have fixed UUIDs (``uuid5``) that do not depend on the seed.
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

from carecycle_emulator.carecycle.store import Store, iso
from carecycle_emulator.carecycle.vocabulary import MEDICARE_POLICY_TYPES, OTHER_POLICY_TYPES, POLICY_STATUSES

_NS = uuid.UUID("6f1c2e0a-8c53-4d8e-9a51-0c8f3b1f7a10")

#: (public sourceId, name, default lead cost); their UUIDs are uuid5(_NS, "source:" + sourceId)
SOURCES = (
    ("src_web", "Website Form", 12.5),
    ("crm-feed", "CRM Feed", 0.0),
    ("src_facebook", "Facebook Lead Ads", 18.0),
    ("src_referral", "Referrals", 0.0),
)
MEMBERS = (
    ("Dana Whitfield", "dana@agency.example"),
    ("Luis Ortega", "luis@agency.example"),
    ("Priya Raman", "priya@agency.example"),
    ("Marcus Bell", "marcus@agency.example"),
    ("Grace Kim", "grace@agency.example"),
)
PULSE_NODES = ("intake", "qualification", "enrollment")

#: state -> (timezone, [(city, county, zip prefix, area code)])
GEOGRAPHY: dict[str, tuple[str, list[tuple[str, str, str, str]]]] = {
    "FL": (
        "America/New_York",
        [
            ("Miami", "Miami-Dade", "331", "305"),
            ("Tampa", "Hillsborough", "336", "813"),
            ("Orlando", "Orange", "328", "407"),
            ("Naples", "Collier", "341", "239"),
        ],
    ),
    "TX": (
        "America/Chicago",
        [
            ("Houston", "Harris", "770", "713"),
            ("Dallas", "Dallas", "752", "214"),
            ("San Antonio", "Bexar", "782", "210"),
        ],
    ),
    "AZ": ("America/Phoenix", [("Phoenix", "Maricopa", "850", "602"), ("Tucson", "Pima", "857", "520")]),
    "CA": (
        "America/Los_Angeles",
        [
            ("Los Angeles", "Los Angeles", "900", "213"),
            ("San Diego", "San Diego", "921", "619"),
            ("Fresno", "Fresno", "937", "559"),
        ],
    ),
    "OH": ("America/New_York", [("Columbus", "Franklin", "432", "614"), ("Cleveland", "Cuyahoga", "441", "216")]),
    "GA": ("America/New_York", [("Atlanta", "Fulton", "303", "404"), ("Savannah", "Chatham", "314", "912")]),
    "NC": ("America/New_York", [("Charlotte", "Mecklenburg", "282", "704"), ("Raleigh", "Wake", "276", "919")]),
    "PA": (
        "America/New_York",
        [("Philadelphia", "Philadelphia", "191", "215"), ("Pittsburgh", "Allegheny", "152", "412")],
    ),
    "MI": ("America/Detroit", [("Detroit", "Wayne", "482", "313")]),
    "NV": ("America/Los_Angeles", [("Las Vegas", "Clark", "891", "702")]),
}
STATE_WEIGHTS = {"FL": 22, "TX": 16, "AZ": 10, "CA": 14, "OH": 8, "GA": 8, "NC": 7, "PA": 7, "MI": 4, "NV": 4}
FIRST_NAMES = (
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Maria",
    "Jose",
    "Carmen",
    "Luis",
    "Rosa",
    "Wei",
    "Mei",
    "Ahmed",
    "Fatima",
    "Dorothy",
    "Harold",
    "Gloria",
    "Walter",
    "Evelyn",
    "Frank",
    "Shirley",
    "Raymond",
    "Joan",
    "Eugene",
    "Ruth",
)
LAST_NAMES = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
)
GENDERS = ("Male", "Female")
MARITAL = ("Single", "Married", "Widowed", "Divorced")
STREETS = ("Main St", "Oak Ave", "Palm Dr", "Maple Ln", "Cedar Ct", "Sunset Blvd", "Lakeview Rd", "Park Pl")
CAMPAIGN_NAMES = (
    ("New Lead Speed-to-Lead", "Calls every new lead within minutes of upload"),
    ("T65 Aging-In Outreach", "Medicare aging-in: customers turning 65"),
    ("AEP Annual Review", "Annual Enrollment Period plan reviews"),
    ("ACA Renewal Reminders", "Open Enrollment renewals for ACA members"),
    ("Win-Back Inactive", "Re-engage inactive customers"),
    ("Birthday Rule Outreach", "Medigap birthday-rule switch opportunities"),
    ("Referral Thank-You", "Thank and qualify referred customers"),
)
CAMPAIGN_STATUS_CYCLE = ("active", "active", "paused", "completed", "draft", "inactive", "archived", "testing")
CARRIERS = ("Humana", "Aetna", "UnitedHealthcare", "Cigna", "Anthem", "WellCare", "Mutual of Omaha", "Ambetter")
MEMBER_STATUS_WEIGHTS = {
    "pending": 30,
    "awaiting_call": 5,
    "in_progress": 15,
    "completed": 20,
    "failed": 8,
    "expired": 5,
    "cancelled": 5,
    "skipped": 4,
    "exceeded_max_calls": 8,
}
NO_ANSWER = ("No Answer", "Voicemail", "Busy")
SUCCESS = ("Appointment Booked", "Transferred", "Interested")
FAILURE = ("Not Interested", "Wrong Number", "Do Not Call")


def fixed_uuid(kind: str, name: str) -> str:
    return str(uuid.uuid5(_NS, f"{kind}:{name}"))


def source_rows() -> list[tuple]:
    return [(fixed_uuid("source", sid), sid, name, cost) for sid, name, cost in SOURCES]


def member_rows() -> list[tuple]:
    return [(fixed_uuid("member", email), name, email) for name, email in MEMBERS]


def pulse_node_ids() -> list[str]:
    return [fixed_uuid("pulse", n) for n in PULSE_NODES]


def rng_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def turns_65(dob: date) -> date:
    try:
        return dob.replace(year=dob.year + 65)
    except ValueError:  # 29 February
        return dob.replace(year=dob.year + 65, day=28)


def anchor_day() -> datetime:
    today = datetime.now(timezone.utc).date()
    return datetime(today.year, today.month, today.day, tzinfo=timezone.utc)


def make_campaign(rng: random.Random, index: int, anchor: datetime) -> dict[str, Any]:
    name, description = CAMPAIGN_NAMES[index % len(CAMPAIGN_NAMES)]
    if index >= len(CAMPAIGN_NAMES):
        name = f"{name} #{index // len(CAMPAIGN_NAMES) + 1}"
    created = anchor - timedelta(days=rng.randint(200, 900), seconds=rng.randint(0, 86399))
    start = created + timedelta(days=rng.randint(1, 30))
    return {
        "id": rng_uuid(rng),
        "created_at": iso(created),
        "updated_at": iso(created + timedelta(days=rng.randint(0, 150))),
        "start_date": iso(start),
        "end_date": None if rng.random() < 0.6 else iso(start + timedelta(days=365)),
        "name": name,
        "description": description,
        "status": CAMPAIGN_STATUS_CYCLE[index % len(CAMPAIGN_STATUS_CYCLE)],
        "max_attempts": rng.randint(3, 5),
        "takes_new_leads": index == 0,
    }


class _FastRandom:
    """Thin fast helpers over one ``random.Random`` (deterministic for a given seed)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.rand = rng.random
        self.bits = rng.getrandbits

    def int(self, lo: int, hi: int) -> int:
        """Integer in ``lo..hi`` inclusive."""
        return lo + int(self.rand() * (hi - lo + 1))

    def pick(self, seq: Sequence[Any]) -> Any:
        return seq[int(self.rand() * len(seq))]

    def weighted(self, seq: Sequence[Any], cum_weights: Sequence[float]) -> Any:
        x = self.rand() * cum_weights[-1]
        return seq[bisect.bisect_right(cum_weights, x)]

    def uuid4(self) -> str:
        h = "%032x" % ((self.bits(128) & _UUID_MASK) | _UUID_V4)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_UUID_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID_V4 = (0x4000 << 64) | (0x8000 << 48)


class _IsoClock:
    """Epoch seconds to ``YYYY-MM-DDTHH:MM:SS.000Z`` fast (caches the date part per day)."""

    def __init__(self) -> None:
        self._days: dict[int, str] = {}

    def __call__(self, epoch_s: int) -> str:
        day, rem = divmod(int(epoch_s), 86400)
        prefix = self._days.get(day)
        if prefix is None:
            prefix = self._days[day] = (date(1970, 1, 1) + timedelta(days=day)).isoformat()
        hh, rem = divmod(rem, 3600)
        mm, ss = divmod(rem, 60)
        return f"{prefix}T{hh:02d}:{mm:02d}:{ss:02d}.000Z"


def _cum(weights: Sequence[float]) -> list[float]:
    return list(itertools.accumulate(weights))


#: big seeds are kept (one at a time) so that resetting to the same big seed again is fast
SNAPSHOT_MIN_CUSTOMERS = 5000
_SNAPSHOTS: dict[tuple, Any] = {}


def seed_store(store: Store, *, seed: int = 0, customers: int = 50, campaigns: int = 3) -> None:
    """Wipe ``store`` and fill it deterministically (100,000 customers load in a few seconds)."""
    key = (seed, customers, campaigns, anchor_day())
    if key in _SNAPSHOTS:
        store.restore(_SNAPSHOTS[key])
        return
    rng = random.Random(f"carecycle-seed:{seed}")
    fr = _FastRandom(rng)
    rand, rint, pick, weighted, new_id, bits = fr.rand, fr.int, fr.pick, fr.weighted, fr.uuid4, fr.bits
    to_iso = _IsoClock()
    anchor = anchor_day()
    anchor_s = int(anchor.timestamp())
    sources = source_rows()
    source_ids = [s[0] for s in sources]
    member_ids = [m[0] for m in member_rows()]
    nodes = pulse_node_ids()
    camps = [make_campaign(rng, i, anchor) for i in range(campaigns)]
    camp_created_s = [
        int(datetime.fromisoformat(c["created_at"][:-1]).replace(tzinfo=timezone.utc).timestamp()) for c in camps
    ]
    states = list(STATE_WEIGHTS)
    state_cum = _cum(list(STATE_WEIGHTS.values()))
    status_values, status_cum = ("Lead", "Active", "Inactive"), _cum((45, 40, 15))
    mstatus_values, mstatus_cum = list(MEMBER_STATUS_WEIGHTS), _cum(list(MEMBER_STATUS_WEIGHTS.values()))
    pstatus_cum = _cum((50, 10, 5, 5, 3, 8, 8, 4, 2, 5))
    extras = [json.dumps({"language": lang}) for lang in ("English", "English", "Spanish")]
    customs = [json.dumps([{"fieldKey": "utm_campaign", "value": val}]) for val in ("aep", "t65", "spring")]
    dob_base = anchor.date()
    dob_ord = dob_base.toordinal()
    three_years_s = 3 * 365 * 86400

    customer_rows: list[tuple] = []
    memberships: list[tuple] = []
    policies: list[tuple] = []
    calls: list[tuple] = []
    call_seq = 0
    for i in range(customers):
        cid = new_id()
        created_s = anchor_s - rint(3600, three_years_s)
        created = to_iso(created_s)
        state = weighted(states, state_cum)
        tz, places = GEOGRAPHY[state]
        city, county, zip3, area = pick(places)
        first, last = pick(FIRST_NAMES), pick(LAST_NAMES)
        r = rand()
        if r < 0.2:  # aging in: turns 65 within the next year
            age_days = 65 * 365 - rint(1, 360)
        elif r < 0.8:
            age_days = rint(65 * 365 + 20, 88 * 365)
        else:
            age_days = rint(26 * 365, 63 * 365)
        dob = date.fromordinal(dob_ord - age_days)
        medicare_age = age_days >= 64 * 365
        phone = f"{area}{200 + (i // 10000) % 800:03d}{i % 10000:04d}"
        test_customer = 1 if rand() < 0.04 else 0
        source = pick(source_ids) if rand() < 0.9 else None
        custom = pick(customs) if rand() < 0.3 else "[]"
        total_calls, last_call, last_disp = 0, None, None
        # policies
        if rand() < 0.5:
            for _ in range(1 if rand() < 0.75 else 2):
                ptype = pick(MEDICARE_POLICY_TYPES) if medicare_age and rand() < 0.8 else pick(OTHER_POLICY_TYPES)
                eff_ord = dob_ord - rint(-90, 3 * 365)
                effective = date.fromordinal(eff_ord)
                enrolled = date.fromordinal(eff_ord - rint(5, 60))
                policies.append(
                    (
                        new_id(),
                        cid,
                        ptype,
                        weighted(POLICY_STATUSES, pstatus_cum),
                        pick(CARRIERS),
                        f"{ptype} Plan {rint(1, 9)}",
                        effective.isoformat(),
                        enrolled.isoformat(),
                        created,
                    )
                )
        # campaign memberships and their calls
        if camps and rand() < 0.7:
            chosen = [int(rand() * len(camps))]
            if len(camps) > 1 and rand() < 0.2:
                other = int(rand() * (len(camps) - 1))
                chosen.append(other + 1 if other >= chosen[0] else other)
            for ci in chosen:
                camp = camps[ci]
                mstatus = weighted(mstatus_values, mstatus_cum)
                joined_s = min(max(created_s, camp_created_s[ci]) + rint(0, 20 * 86400), anchor_s - 3600)
                max_attempts = camp["max_attempts"]
                if mstatus in ("pending", "awaiting_call", "skipped"):
                    n_calls = 0
                elif mstatus == "exceeded_max_calls":
                    n_calls = max_attempts
                elif mstatus in ("completed", "failed"):
                    n_calls = rint(1, max_attempts)
                else:
                    n_calls = rint(1, max(1, max_attempts - 1))
                span = max(60, anchor_s - joined_s)
                offsets = sorted(rint(60, span) for _ in range(n_calls))
                for k, off in enumerate(offsets):
                    final = k == n_calls - 1
                    if final and mstatus == "completed":
                        disp, dur = pick(SUCCESS), rint(60_000, 900_000)
                    elif final and mstatus == "failed":
                        disp, dur = pick(FAILURE), rint(10_000, 120_000)
                    else:
                        disp, dur = pick(NO_ANSWER), rint(3_000, 35_000)
                    ts = to_iso(joined_s + off)
                    call_seq += 1
                    calls.append(
                        (
                            new_id(),
                            call_seq,
                            cid,
                            camp["id"],
                            ts,
                            disp,
                            dur,
                            "outbound",
                            "+1" + phone,
                            f"{disp} on attempt {k + 1}",
                            "true" if disp in SUCCESS else "false",
                            test_customer,
                        )
                    )
                    total_calls += 1
                    if last_call is None or ts > last_call:
                        last_call, last_disp = ts, disp
                joined = to_iso(joined_s)
                memberships.append((cid, camp["id"], mstatus, n_calls, joined, joined))
        # cosmetic fields from one 64-bit draw (fast for big seeds)
        b = bits(64)
        email = f"{first}.{last}{i}@example.com".lower() if b % 100 < 85 else None
        mbi = (
            f"{1 + (b >> 8) % 9}EG{1 + (b >> 12) % 9}TE{(b >> 16) % 10}MK{10 + (b >> 20) % 90}"
            if medicare_age
            else None
        )
        # column order: store.CUSTOMER_COLUMN_LIST
        customer_rows.append(
            (
                cid,
                i + 1,
                created,
                to_iso(created_s + (b >> 27) % (86400 * 30)),
                weighted(status_values, status_cum),
                first,
                last,
                email,
                phone,
                dob.isoformat(),
                turns_65(dob).isoformat(),
                GENDERS[(b >> 49) & 1],
                MARITAL[(b >> 50) % 4],
                f"{zip3}{(b >> 52) % 100:02d}",
                tz,
                state,
                city,
                county,
                f"{10 + (b >> 7) % 9990} {STREETS[(b >> 3) % len(STREETS)]}",
                None,
                mbi,
                f"seed-{i:06d}" if rand() < 0.7 else None,
                source,
                source,
                pick(member_ids) if rand() < 0.7 else None,
                pick(nodes) if rand() < 0.4 else None,
                test_customer,
                total_calls,
                last_call,
                last_disp,
                extras[(b >> 59) % 3],
                custom,
            )
        )

    store.wipe()
    store.bulk_load(
        sources=sources,
        members=member_rows(),
        campaigns=camps,
        customers=customer_rows,
        memberships=memberships,
        policies=policies,
        calls=calls,
    )
    if customers >= SNAPSHOT_MIN_CUSTOMERS:
        _SNAPSHOTS.clear()  # keep one big snapshot at most
        _SNAPSHOTS[key] = store.snapshot()
