"""The CareCloud emulator's deterministic customers.

The seed (``seed``, ``count``) fixes every value: mostly US customers (phone ``1XXXXXXXXXX``, 5-digit zip), every 7th
Czech (phone ``420...``, zip ``602 00``) and every 9th without a zip; ``last_change`` is spread over the ``days``
before ``anchor``. Every name comes from :data:`FIRST_NAMES` and :data:`LAST_NAMES`, so a test can check that no
patient-like value leaked into a log or a summary.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

from carecycle_emulator.phones import AREA_CODES

#: how CareCloud writes ``last_change`` and token expiry (project-local time)
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: ``customer_source_id`` values, in turn
SOURCES = ("8c5a0f2d0b6e4c1a9e7d", "1f4b9a7e2c3d5e6f7a8b")

_US_CITIES = (("New York", "10001"), ("Miami", "33101"), ("Houston", "77001"), ("Phoenix", "85001"),
              ("Chicago", "60601"), ("Tampa", "33602"), ("Dallas", "75201"))  # fmt: skip
#: the seeded first and last names
FIRST_NAMES = ("Mary", "John", "Linda", "Robert", "Patricia", "James", "Barbara", "William", "Susan", "Richard")
LAST_NAMES = ("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Novak", "Svoboda")


def _hex_id(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(26))


def _nanp(rng: random.Random) -> str:
    """A US number with a real area code (a CRM's numbers are numbers that exist; the foreign ones are on purpose)."""
    area = AREA_CODES[rng.randint(201, 989) % len(AREA_CODES)]
    return f"1{area}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"


def seed_customers(count: int, seed: int, anchor: datetime, days: float) -> list[dict[str, Any]]:
    """``count`` deterministic CareCloud customers; ``last_change`` spread over the ``days`` before ``anchor``.

    :param count: how many customers.
    :param seed: the random seed.
    :param anchor: the newest possible ``last_change`` (project-local, naive).
    :param days: how far back ``last_change`` reaches.
    """
    rng = random.Random(f"carecloud:{seed}")
    customers = []
    for i in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        czech, no_zip = i % 7 == 3, i % 9 == 5
        city, zip_code = ("Brno", "602 00") if czech else rng.choice(_US_CITIES)
        phone = f"420{rng.randint(600000000, 799999999)}" if czech else _nanp(rng)
        born = date(1940, 1, 1) + timedelta(days=rng.randint(0, 365 * 30))
        changed = anchor - timedelta(seconds=rng.randint(0, int(days * 86400)))
        customers.append(
            {
                "customer_id": _hex_id(rng),
                "personal_information": {
                    "salutation": f"Dear {first}",
                    "gender": rng.choice((1, 2)),
                    "first_name": first,
                    "last_name": last,
                    "pre_nominals": "",
                    "post_nominals": "",
                    "birthdate": born.isoformat(),
                    "email": f"{first}.{last}.{i}@example.com".lower(),
                    "phone": phone,
                    "language_id": "cs" if czech else "en",
                    "store_id": None,
                    "photo_url": None,
                    "address": {
                        "address1": f"{rng.randint(1, 999)} Main St",
                        "address2": "",
                        "zip": None if no_zip else zip_code,
                        "city": city,
                        "country_code": "CZ" if czech else "US",
                    },
                    "agreement": {"agreement_gtc": 1, "agreement_profiling": 0, "agreement_marketing_communication": 1},
                },
                "customer_source_id": SOURCES[i % len(SOURCES)],
                "doi_email": True,
                "doi_phone": False,
                "last_change": changed.strftime(DATETIME_FORMAT),
                "state": 2 if i % 11 == 10 else 1,
            }
        )
    return customers
