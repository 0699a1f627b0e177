from __future__ import annotations

import importlib.metadata

import pytest

from airflow_provider_carecycle import __version__
from airflow_provider_carecycle.get_provider_info import get_provider_info
from airflow_provider_carecycle.hooks import carecloud, carecycle

HOOK_MODULES = {"carecycle": carecycle, "carecloud_crm": carecloud}


def _snake(behaviour: dict) -> dict:
    return {key.replace("-", "_"): value for key, value in behaviour.items()}


def _connection_type(name: str) -> dict:
    (conn_type,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == name]
    return conn_type


def test_every_hook_module_declares_one_connection_type():
    assert sorted(c["connection-type"] for c in get_provider_info()["connection-types"]) == sorted(HOOK_MODULES)


@pytest.mark.parametrize("name", sorted(HOOK_MODULES))
def test_connection_form_metadata_agrees_with_the_hook(name):
    conn_type = _connection_type(name)
    module, _, class_name = conn_type["hook-class-name"].rpartition(".")
    hook = getattr(HOOK_MODULES[name], class_name)
    assert module == HOOK_MODULES[name].__name__
    assert conn_type["connection-type"] == hook.conn_type
    assert conn_type["hook-name"] == hook.hook_name
    assert _snake(conn_type["ui-field-behaviour"]) == hook.get_ui_field_behaviour()


@pytest.mark.parametrize("name", sorted(HOOK_MODULES))
def test_conn_fields_are_the_extras_the_hook_reads(name):
    conn_type = _connection_type(name)
    link_fields = {"app_url"} if name == "carecycle" else set()  # read by links.py, not by the hook
    assert set(conn_type["conn-fields"]) == set(HOOK_MODULES[name].EXTRA_FIELDS) | link_fields
    for spec in conn_type["conn-fields"].values():
        assert spec["label"] and spec["schema"]["type"]


def test_every_declared_module_imports():
    info = get_provider_info()
    modules = [
        module
        for section in ("hooks", "operators", "sensors", "triggers")
        for entry in info[section]
        for module in entry["python-modules"]
    ] + [entry["python-module"] for entry in info["transfers"]]
    assert len(modules) == 9
    for module in modules:
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
