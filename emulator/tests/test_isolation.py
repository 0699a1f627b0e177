"""The emulator is the test oracle: it shares no code with the client it tests, and loading it costs nothing.

Each check runs in a fresh interpreter, so what this test session already imported cannot hide an import.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from importlib.metadata import entry_points

import carecycle_emulator

FORBIDDEN = ("airflow", "airflow_provider_carecycle")


def modules_loaded_by(code: str) -> list[str]:
    """The names in ``sys.modules`` after a fresh interpreter ran ``code``.

    :param code: Python statements to run.
    """
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def _forbidden(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in FORBIDDEN]


def every_module() -> list[str]:
    """Every module of the ``carecycle_emulator`` package, found by walking it (so a new module is covered too)."""
    found = ["carecycle_emulator"]
    for info in pkgutil.walk_packages(carecycle_emulator.__path__, "carecycle_emulator."):
        found.append(info.name)
    return found


def test_the_walk_finds_both_vendors_and_the_plugin():
    modules = every_module()
    for name in ("base", "cli", "pytest_plugin", "carecycle.server", "carecycle.validation", "carecloud.server"):
        assert f"carecycle_emulator.{name}" in modules


def test_no_emulator_module_imports_the_provider_or_airflow():
    imports = "\n".join(f"import {name}" for name in every_module())
    loaded = modules_loaded_by(imports)
    assert "carecycle_emulator.carecycle.server" in loaded  # the imports did run
    assert _forbidden(loaded) == []


def test_running_both_emulators_imports_the_provider_nor_airflow():
    loaded = modules_loaded_by(
        "from carecycle_emulator import CareCloudEmulator, CareCycleEmulator\n"
        "with CareCycleEmulator(customers=3) as a, CareCloudEmulator(customers=3) as b:\n"
        "    assert a.url and b.base_url"
    )
    assert _forbidden(loaded) == []


def test_a_forbidden_import_would_be_caught():
    """The check itself: a module of the client or of Airflow in the fresh interpreter is reported."""
    loaded = modules_loaded_by(
        "import types\n"
        "for name in ('airflow_provider_carecycle.vocabulary', 'airflow.models', 'airflowish'):\n"
        "    sys.modules[name] = types.ModuleType(name)"
    )
    assert _forbidden(loaded) == ["airflow.models", "airflow_provider_carecycle.vocabulary"]


def test_importing_the_package_and_the_pytest_plugin_is_light():
    """pytest loads the plugin in every run of an environment that has the emulator, so it imports pytest only."""
    loaded = modules_loaded_by("import carecycle_emulator\nimport carecycle_emulator.pytest_plugin")
    emulator_modules = [m for m in loaded if m.startswith("carecycle_emulator")]
    assert emulator_modules == ["carecycle_emulator", "carecycle_emulator.pytest_plugin"]
    assert not [m for m in ("http.server", "sqlite3", "socketserver", "requests") if m in loaded]
    assert _forbidden(loaded) == []


def test_the_public_names_resolve_on_first_use():
    for name in carecycle_emulator.__all__:
        assert getattr(carecycle_emulator, name) is not None, name
    assert set(carecycle_emulator.__all__) == {"__version__", *carecycle_emulator._EXPORTS}
    assert carecycle_emulator.CareCycleEmulator.__module__ == "carecycle_emulator.carecycle.server"


def test_the_fixtures_are_registered_as_a_pytest11_entry_point():
    (plugin,) = [ep for ep in entry_points(group="pytest11") if ep.name == "carecycle_emulator"]
    assert plugin.value == "carecycle_emulator.pytest_plugin"
