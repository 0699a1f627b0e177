"""The fixtures the smoke suite borrows from the full suite's test modules (reused, not copied)."""

from __future__ import annotations

from tests.example_dags.test_example_dags import crm_feed_setup  # noqa: F401
