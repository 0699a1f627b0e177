"""``_compat``: every Airflow name it offers resolves on this Airflow, lazily, or fails naming where it looked."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import warnings

import pytest

from airflow_provider_carecycle import _compat

pytestmark = pytest.mark.smoke


@pytest.mark.parametrize("name", sorted(_compat._LOCATIONS))
def test_every_name_resolves_from_the_newest_module_that_has_it(name):
    value = getattr(_compat, name)
    for module_name in _compat._LOCATIONS[name]:  # newest first: the first module that has it must be the source
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, name):
            assert getattr(module, name) is value, f"{name} does not come from {module_name}"
            break
    assert name in _compat.__all__


def test_the_exceptions_are_the_ones_airflow_itself_raises_and_catches():
    from airflow import exceptions

    # whichever module they come from, operators must raise the classes Airflow's task runner knows
    assert issubclass(_compat.AirflowFailException, exceptions.AirflowException)
    assert issubclass(_compat.AirflowException, exceptions.AirflowException)
    with warnings.catch_warnings():  # 3.2+ deprecates reading it from airflow.exceptions (still the same class)
        warnings.simplefilter("ignore")
        assert _compat.TaskDeferred is exceptions.TaskDeferred


def test_a_name_found_nowhere_is_an_import_error_naming_it_and_every_place_tried():
    with pytest.raises(ImportError) as err:
        _compat._first("BaseHook", "airflow.no_such_module", "airflow.exceptions")
    message = str(err.value)
    assert "'BaseHook'" in message and _compat.AIRFLOW_VERSION in message
    assert "airflow.no_such_module (not importable" in message
    assert "airflow.exceptions (no BaseHook)" in message


def test_a_module_whose_lazy_name_fails_to_import_is_passed_over(monkeypatch):
    import types

    broken = types.ModuleType("carecycle_broken_lazy_module")

    def lazy(name):
        raise ImportError(f"cannot import the submodule behind {name}")

    broken.__getattr__ = lazy
    monkeypatch.setitem(sys.modules, broken.__name__, broken)
    assert _compat._first("AirflowException", broken.__name__, "airflow.exceptions") is _compat.AirflowException
    with pytest.raises(ImportError, match="its BaseHook is not importable: cannot import the submodule"):
        _compat._first("BaseHook", broken.__name__)


def test_unknown_attributes_stay_attribute_errors():
    with pytest.raises(AttributeError, match="NoSuchName"):
        _compat.NoSuchName  # noqa: B018


def test_default_deferrable_reads_the_airflow_setting(monkeypatch):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert _compat.default_deferrable() is True
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
    assert _compat.default_deferrable() is False


def test_importing_a_hook_resolves_only_the_names_the_hooks_use():
    # a fresh interpreter (in this one the other tests have long resolved everything); a hook needs neither the
    # trigger nor the sensor machinery, whatever Airflow itself happens to import on a given line
    code = (
        "import airflow_provider_carecycle.hooks.carecycle, airflow_provider_carecycle.carecloud.hook;"
        "import json; from airflow_provider_carecycle import _compat;"
        "print(json.dumps(sorted(name for name in _compat._LOCATIONS if name in vars(_compat))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    resolved = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert "BaseHook" in resolved
    assert not {"BaseTrigger", "TriggerEvent", "BaseSensorOperator", "PokeReturnValue"} & resolved


@pytest.mark.parametrize("supervised", [False, True], ids=["outside-a-task", "in-a-task-or-the-triggerer"])
def test_the_hooks_read_their_connection_with_no_deprecation_warning(monkeypatch, supervised):
    """Issue 19: on Airflow 3.0 the classic ``BaseHook.get_connection`` warns in every task and in the triggerer
    (where the Task SDK's supervisor channel is set up) that ``Connection.get_connection_from_secrets`` is deprecated:
    18 times a run of the CRM feed. The hooks read it the way each line offers without one."""
    from airflow_provider_carecycle.carecloud.hook import CareCloudCrmHook
    from airflow_provider_carecycle.hooks.carecycle import CareCycleHook

    # the URI form: Airflow 3.1's own environment-variables backend warns for the JSON form, whoever asks
    monkeypatch.setenv("AIRFLOW_CONN_CC_COMPAT", "carecycle://:cc_compat_key@api.test")
    if supervised:

        class Supervisor:
            """The channel: the connection comes from the environment, so only masked secrets are sent."""

            def send(self, msg):
                return None

        task_runner = pytest.importorskip("airflow.sdk.execution_time.task_runner", reason="Airflow 3 only")
        monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", Supervisor(), raising=False)
    _compat.get_connection("cc_compat")  # what Airflow imports on first use may warn once (e.g. 2.11's metrics)
    for read in (_compat.get_connection, CareCycleHook.get_connection, CareCloudCrmHook.get_connection):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            conn = read("cc_compat")
        assert (conn.host, conn.password) == ("api.test", "cc_compat_key")
        assert not [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)], read
