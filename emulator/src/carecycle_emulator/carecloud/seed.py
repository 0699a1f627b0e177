"""The CareCloud emulator's deterministic customers.

The seed (``seed``, ``count``) fixes every value: mostly US customers (phone ``1XXXXXXXXXX``, 5-digit zip), every 7th
Czech (phone ``420...``, zip ``602 00``) and every 9th without a zip; ``last_change`` is spread over the ``days``
before ``anchor``; every 11th is non active (``state`` 2). Consents: every customer has given the three default
consents (:data:`CONSENTS`) except every 13th, whose marketing-communication consent is not set (2); every 5th
carries only the deprecated ``agreement`` block (no ``consents`` list); every 6th has no confirmed phone
(``doi_phone`` ``None``). No seeded consent is withdrawn: tests and demos withdraw them. Every name comes from
:data:`FIRST_NAMES` and :data:`LAST_NAMES`, so a test can check that no
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

#: ``GET /communication-channels``: the channels the spec names (there is no telephone-call channel)
COMMUNICATION_CHANNELS = tuple(
    {"communication_channel_id": f"c0{n:024x}", "name": name, "text_id": text_id}
    for n, (name, text_id) in enumerate(
        (("E-mail", "email"), ("SMS", "sms"), ("Web push", "web_push"), ("Mobile app push", "mobile_app_push"),
         ("Viber", "viber"), ("WhatsApp", "whatsapp"), ("White Post", "white_post")),
        start=1,
    )
)  # fmt: skip
_CHANNEL = {c["text_id"]: c["communication_channel_id"] for c in COMMUNICATION_CHANNELS}
#: ``GET /agreements`` (the consent catalogue): CareCloud's three default consents and two a project added, tied to a
#: channel. The ``text_id`` values are the emulator's (the spec does not list a project's values).
CONSENTS = tuple(
    {"agreement_id": f"a0{n:024x}", "name": name, "text": f"I agree to {name.lower()}.",
     "withdrawal_text": f"I withdraw my consent to {name.lower()}.", "communication_channel_id": channel,
     "text_id": text_id, "last_change": "2024-01-01 00:00:00"}
    for n, (name, text_id, channel) in enumerate(
        (("Processing of personal data", "personal_data_processing", None),
         ("Marketing communication", "marketing_communication", None),
         ("Profiling", "profiling", None),
         ("SMS offers", "sms_offers", _CHANNEL["sms"]),
         ("E-mail newsletter", "email_newsletter", _CHANNEL["email"])),
        start=1,
    )
)  # fmt: skip
#: consent ``text_id`` -> its ``agreement_id``
CONSENT_IDS = {c["text_id"]: c["agreement_id"] for c in CONSENTS}
#: the deprecated ``agreement`` block's fixed keys -> the consent they stand for
AGREEMENT_KEYS = {
    "agreement_gtc": "personal_data_processing",
    "agreement_profiling": "profiling",
    "agreement_marketing_communication": "marketing_communication",
}

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
                    **_consents(i, changed.strftime(DATETIME_FORMAT)),
                },
                "customer_source_id": SOURCES[i % len(SOURCES)],
                "doi_email": (changed - timedelta(days=30)).strftime(DATETIME_FORMAT),
                "doi_phone": None if i % 6 == 2 else (changed - timedelta(days=30)).strftime(DATETIME_FORMAT),
                "last_change": changed.strftime(DATETIME_FORMAT),
                "state": 2 if i % 11 == 10 else 1,
            }
        )
    return customers


def _consents(i: int, changed: str) -> dict[str, Any]:
    """The ``i``-th customer's consents: a ``consents`` list, or (every 5th) only the deprecated ``agreement``."""
    marketing = 2 if i % 13 == 6 else 1
    if i % 5 == 4:
        return {
            "agreement": {
                "agreement_gtc": 1,
                "agreement_profiling": 1,
                "agreement_marketing_communication": marketing,
                "custom_agreements": [],
            }
        }
    values = {"personal_data_processing": 1, "marketing_communication": marketing, "profiling": 1}
    return {
        "consents": [
            {"consent_id": CONSENT_IDS[text_id], "consent_value": value, "last_change": changed}
            for text_id, value in values.items()
        ]
    }
