"""Hostile cases of the consent loop: where the sync ledger cannot tell what careCycle holds, nothing is suppressed."""

from __future__ import annotations

from carecycle_emulator import CARECLOUD_ANCHOR as ANCHOR
from tests.transfers.test_carecloud_consent import CONTACT, feed, flags_of, held, leadable, settled


def test_full_sync_never_suppresses_a_customer_carecycle_holds(carecloud_emulator, carecycle_emulator, tmp_path):
    # full_sync reads none of the ledger, so it cannot tell held from never held: in doubt, send the flag (before the
    # fix the withdrawn customer careCycle held was suppressed, and careCycle kept calling them)
    customer = leadable(carecloud_emulator)[0]
    feed(tmp_path)
    carecloud_emulator.set_consent(customer["customer_id"], "marketing_communication", 0, when=ANCHOR)
    result = feed(tmp_path, full_sync=True)
    assert result["suppressed"] == 0 and settled(result)
    assert flags_of(held(carecycle_emulator, customer["customer_id"])) == set(CONTACT)


def test_a_ledger_file_that_cannot_be_read_suppresses_nothing(carecloud_emulator, carecycle_emulator, tmp_path):
    customer = leadable(carecloud_emulator)[0]
    feed(tmp_path)
    (ledger_file,) = (tmp_path / "ledger").glob("ledger-*.sqlite")
    ledger_file.write_bytes(b"not a ledger")  # a damaged file: what careCycle holds is unknown now
    carecloud_emulator.set_consent(customer["customer_id"], "marketing_communication", 0, when=ANCHOR)
    result = feed(tmp_path)
    assert result["suppressed"] == 0 and settled(result)
    assert flags_of(held(carecycle_emulator, customer["customer_id"])) == set(CONTACT)
