from __future__ import annotations

import importlib.metadata
import json
import pathlib

import airflow
import jsonschema
import pytest

from airflow_provider_carecycle import __version__
from airflow_provider_carecycle.carecloud import hook as carecloud
from airflow_provider_carecycle.get_provider_info import get_provider_info
from airflow_provider_carecycle.hooks import carecycle

HOOK_MODULES = {"carecycle": carecycle, "carecloud": carecloud}
HOOKS = {"carecycle": carecycle.CareCycleHook, "carecloud": carecloud.CareCloudCrmHook}
#: a value of each extra's type that no default has, so a hook that ignores the extra is caught
DISTINCT = {"number": 7.5, "integer": 7, "string": "Europe/Vienna"}


def _snake(behaviour: dict) -> dict:
    return {key.replace("-", "_"): value for key, value in behaviour.items()}


def _connection_type(name: str) -> dict:
    (conn_type,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == name]
    return conn_type


def _define(carecycle_connection, name: str, extra: dict) -> str:
    """A connection of type ``name`` with ``extra``, and whatever else its hook needs."""
    if name == "carecycle":
        return carecycle_connection("form_cc", host="https://api.test", extra=extra)
    return carecycle_connection(
        "form_crm",
        conn_type="carecloud",
        host="x.test",
        login="u",
        password="crm-secret-pw",
        extra={"user_external_application_id": "app", **extra},
    )


def _airflow_schema(name: str) -> dict:
    return json.loads((pathlib.Path(airflow.__file__).parent / name).read_text(encoding="utf-8"))


def test_every_hook_module_declares_one_connection_type():
    assert sorted(c["connection-type"] for c in get_provider_info()["connection-types"]) == sorted(HOOK_MODULES)


def test_provider_info_and_forms_are_valid_for_the_installed_airflow():
    jsonschema.validate(get_provider_info(), _airflow_schema("provider_info.schema.json"))
    behaviour_schema = _airflow_schema("customized_form_field_behaviours.schema.json")
    for hook in HOOKS.values():
        jsonschema.validate(hook.get_ui_field_behaviour(), behaviour_schema)
    for conn_type in get_provider_info()["connection-types"]:
        for spec in conn_type["conn-fields"].values():
            jsonschema.Draft7Validator.check_schema(spec["schema"])
            if "default" in spec["schema"]:
                jsonschema.validate(spec["schema"]["default"], spec["schema"])


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


@pytest.mark.parametrize("name", sorted(HOOK_MODULES))
def test_a_connection_without_extras_gets_the_form_defaults(carecycle_connection, name):
    settings = HOOKS[name](_define(carecycle_connection, name, {}))._settings
    for field, spec in _connection_type(name)["conn-fields"].items():
        if field == "user_external_application_id":  # required: the test connection sets it
            continue
        assert settings[field] == spec["schema"].get("default"), field


@pytest.mark.parametrize("name", sorted(HOOK_MODULES))
def test_every_form_field_reaches_the_hook(carecycle_connection, name):
    fields = _connection_type(name)["conn-fields"]
    extra = {field: DISTINCT[spec["schema"]["type"][0]] for field, spec in fields.items()}
    if "accept_language" in extra:
        extra["accept_language"] = "cs, en;q=0.8"  # a language list, not a zone name
    settings = HOOKS[name](_define(carecycle_connection, name, {k: str(v) for k, v in extra.items()}))._settings
    assert {field: settings[field] for field in extra} == extra


@pytest.mark.parametrize("name", sorted(HOOK_MODULES))
def test_the_extra_placeholder_is_valid_json_of_form_fields(name):
    conn_type = _connection_type(name)
    example = json.loads(conn_type["ui-field-behaviour"]["placeholders"]["extra"])
    assert set(example) <= set(conn_type["conn-fields"])
    for field, value in example.items():
        schema = conn_type["conn-fields"][field]["schema"]
        jsonschema.validate(value, schema)
        if "number" in schema["type"] or "integer" in schema["type"]:  # a number shown is the default
            assert value == schema["default"], (
                f"the placeholder shows {field}={value}, the default is {schema['default']}"
            )


def test_the_limiter_wording_says_what_it_shares():
    for conn_type in get_provider_info()["connection-types"]:
        description = conn_type["conn-fields"]["requests_per_minute"]["description"]
        assert "worker process" not in description  # each task instance is a process of its own
        assert "host's task processes" in description


def test_airflow_builds_the_same_form_from_provider_info():
    """What Airflow itself makes of the metadata: on 3.2+ the form widgets come from ``conn-fields`` (prefilled
    with the defaults the hook uses), on older lines the form comes from ``get_ui_field_behaviour()``."""
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    for name, hook in HOOKS.items():  # Airflow 2 fills the form from each hook when it imports it
        assert manager.hooks[name].hook_class_name == f"{hook.__module__}.{hook.__name__}"
    widgets = manager.connection_form_widgets
    for name, hook in HOOKS.items():
        assert manager.field_behaviours[name]["relabeling"] == hook.get_ui_field_behaviour()["relabeling"]
        from_provider_info = {key for key in widgets if key.startswith(f"extra__{name}__")}
        if from_provider_info:  # Airflow 3.2+
            assert from_provider_info == {f"extra__{name}__{field}" for field in hook.form.extras}
            for field, spec in hook.form.extras.items():
                assert widgets[f"extra__{name}__{field}"].field["value"] == spec.default


def test_every_declared_module_imports():
    info = get_provider_info()
    modules = [
        module
        for section in ("hooks", "operators", "sensors", "triggers")
        for entry in info[section]
        for module in entry["python-modules"]
    ] + [entry["python-module"] for entry in info["transfers"]]
    assert len(modules) == 10
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


def test_each_operator_sensor_and_transfer_has_its_docs_page_in_its_integration():
    """Every operator, sensor and transfer class of the declared modules is named on a page of its integration's
    ``how-to-guide``, and every page listed exists."""
    import importlib
    import inspect

    from airflow_provider_carecycle._compat import BaseOperator

    info = get_provider_info()
    root = pathlib.Path(__file__).resolve().parent.parent
    guides = {i["integration-name"]: i["how-to-guide"] for i in info["integrations"]}
    for pages in guides.values():
        assert pages and all((root / page).is_file() for page in pages), pages
    declared = [
        (e["integration-name"], m) for kind in ("operators", "sensors") for e in info[kind] for m in e["python-modules"]
    ]
    declared += [(t["source-integration-name"], t["python-module"]) for t in info["transfers"]]
    missing = []
    for integration, module_name in declared:
        text = "\n".join(
            (root / page).read_text(encoding="utf-8") for page in guides.get(integration, guides["careCycle"])
        )
        module = importlib.import_module(module_name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module_name and issubclass(cls, BaseOperator) and not inspect.isabstract(cls):
                if not name.startswith("_") and not name.endswith("BaseOperator") and f"`{name}`" not in text:
                    missing.append(f"{module_name}.{name} ({integration})")
    assert missing == []
