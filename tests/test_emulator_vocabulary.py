"""The emulator keeps its own copy of the careCycle API's value sets (it shares no code with the client it tests);
both copies are written from the vendor's pages, so they must agree. When the vendor changes a value set, change it
in ``airflow_provider_carecycle/vocabulary.py`` and in the emulator's ``carecycle_emulator/carecycle/vocabulary.py``.
"""

from __future__ import annotations

import pytest

from airflow_provider_carecycle import vocabulary as client
from carecycle_emulator.carecycle import vocabulary as emulator

SHARED = sorted(name for name in vars(emulator) if name.isupper())


def test_the_emulator_copy_holds_the_value_sets_it_enforces():
    assert {"CUSTOMER_STATUSES", "CAMPAIGN_STATUSES", "POLICY_TYPES", "GENDERS", "MAX_RECORDS_PER_UPLOAD"} <= set(
        SHARED
    )


@pytest.mark.parametrize("name", SHARED)
def test_the_client_and_the_emulator_agree(name):
    assert getattr(client, name) == getattr(emulator, name), (
        f"{name} differs between airflow_provider_carecycle.vocabulary and carecycle_emulator.carecycle.vocabulary"
    )
