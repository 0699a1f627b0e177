"""The lead sync's rules and state are pure Python: every ``sync/`` module but the engine imports without loading
Airflow, an HTTP client or the storage layer (object storage is reached only when a store is built).

The engine is the one module that talks to Airflow's world (careCycle's errors are Airflow exceptions, the rejected
file is written through the storage layer); each check runs in a fresh interpreter (:mod:`tests.purity`).
"""

from __future__ import annotations

import pytest

from tests.purity import heavy_modules_loaded_by, modules_of

#: the sync modules that may load Airflow when imported
AIRFLOW_FACING = {"airflow_provider_carecycle.sync.engine"}
PURE = [module for module in modules_of("sync") if module not in AIRFLOW_FACING]


def test_the_pure_modules_include_the_answer_rules_the_spool_and_the_stores():
    expected = {
        "answers",
        "checkpoint",
        "ledger",
        "protocols",
        "spool",
        "state_store",
        "stores",
        "summary",
        "watermark",
    }
    assert expected <= {name.rpartition(".")[2] for name in PURE}


@pytest.mark.parametrize("module", PURE)
def test_importing_a_sync_module_loads_no_airflow_no_http_client_and_no_storage_layer(module):
    assert heavy_modules_loaded_by(module) == []


def test_the_engine_is_the_module_that_loads_airflow():
    assert "airflow" in heavy_modules_loaded_by("airflow_provider_carecycle.sync.engine")
