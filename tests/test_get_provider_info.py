from __future__ import annotations

import importlib.metadata

from airflow_provider_carecycle import __version__
from airflow_provider_carecycle.get_provider_info import get_provider_info
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook


def _snake(behaviour: dict) -> dict:
    return {key.replace("-", "_"): value for key, value in behaviour.items()}


def test_connection_form_metadata_agrees_with_the_hook():
    (conn_type,) = get_provider_info()["connection-types"]
    assert conn_type["connection-type"] == CareCycleHook.conn_type
    assert conn_type["hook-class-name"] == f"{CareCycleHook.__module__}.{CareCycleHook.__qualname__}"
    assert conn_type["hook-name"] == CareCycleHook.hook_name
    assert _snake(conn_type["ui-field-behaviour"]) == CareCycleHook.get_ui_field_behaviour()


def test_conn_fields_are_the_extras_the_hook_reads():
    from airflow_provider_carecycle.hooks.carecycle import EXTRA_FIELDS

    (conn_type,) = get_provider_info()["connection-types"]
    assert set(conn_type["conn-fields"]) == set(EXTRA_FIELDS)
    for spec in conn_type["conn-fields"].values():
        assert spec["label"] and spec["schema"]["type"]


def test_every_declared_module_imports():
    info = get_provider_info()
    for section in ("hooks", "operators", "sensors", "triggers", "transfers"):
        for entry in info.get(section, []):
            for module in entry.get("python-modules", []):
                importlib.import_module(module)
    for conn_type in info["connection-types"]:
        module, _, name = conn_type["hook-class-name"].rpartition(".")
        assert getattr(importlib.import_module(module), name)


def test_entry_point_and_single_version_source():
    (entry_point,) = [
        ep
        for ep in importlib.metadata.entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_carecycle")
    ]
    assert entry_point.load() is get_provider_info
    assert (
        get_provider_info()["versions"] == [__version__] == [importlib.metadata.version("airflow-provider-carecycle")]
    )
