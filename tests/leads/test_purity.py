"""``leads/`` is pure: each of its modules imports without loading Airflow, an HTTP client or the storage layer.

Each check runs in a fresh interpreter (:mod:`tests.purity`), since this test process has long imported Airflow.
"""

from __future__ import annotations

import pytest

from tests.purity import heavy_modules_loaded_by, modules_of

LEADS_MODULES = modules_of("leads")


def test_every_module_of_leads_is_checked():
    assert {"fields", "rejection", "validation"} <= {name.rpartition(".")[2] for name in LEADS_MODULES}


@pytest.mark.parametrize("module", [*LEADS_MODULES, "airflow_provider_carecycle.records"])
def test_importing_a_leads_module_loads_no_airflow_no_http_client_and_no_storage_layer(module):
    assert heavy_modules_loaded_by(module) == []


def test_the_probe_sees_airflow_when_it_is_loaded():
    """The check above can fail: the storage layer (object storage paths) does load Airflow."""
    loaded = heavy_modules_loaded_by("airflow_provider_carecycle.storage")
    assert "airflow" in loaded and "airflow_provider_carecycle.storage" in loaded
