"""What the two distributions of this repository ship: the provider without the emulator, the emulator on its own.

Both wheels (and the provider's sdist) are built with ``uv build`` into a temporary folder (about a second each; the
build backend, hatchling, comes from uv's cache or PyPI). Under ``make dist``, ``CARECYCLE_DIST`` names the folder it
built them in, and these tests check those very files instead.
"""

from __future__ import annotations

import configparser
import email.parser
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import airflow_provider_carecycle

ROOT = Path(__file__).resolve().parent.parent
VERSION = airflow_provider_carecycle.__version__


def _uv() -> str | None:
    """The uv binary: the ``uv`` package of this interpreter, else ``uv`` on PATH, else the Makefile's ``.venv``."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv")
    if found:
        return found
    local = ROOT / ".venv" / "bin" / "uv"
    return str(local) if os.access(local, os.X_OK) else None


def _build(kind: str, project: Path, out: Path) -> Path:
    dist = os.environ.get("CARECYCLE_DIST")
    if dist:  # make dist: the files it built
        name = "carecycle_emulator" if project.name == "emulator" else "airflow_provider_carecycle"
        (built,) = (ROOT / dist).glob(f"{name}-{VERSION}{'-py3-none-any.whl' if kind == 'wheel' else '.tar.gz'}")
        return built
    uv = _uv()
    if uv is None:
        pytest.skip("uv is not installed (make creates .venv/bin/uv)")
    result = subprocess.run(
        [uv, "build", f"--{kind}", "--out-dir", str(out), str(project)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = out.glob("*.whl" if kind == "wheel" else "*.tar.gz")
    return built


@pytest.fixture(scope="module")
def provider_wheel(tmp_path_factory) -> zipfile.ZipFile:
    with zipfile.ZipFile(_build("wheel", ROOT, tmp_path_factory.mktemp("provider-wheel"))) as wheel:
        yield wheel


@pytest.fixture(scope="module")
def emulator_wheel(tmp_path_factory) -> zipfile.ZipFile:
    with zipfile.ZipFile(_build("wheel", ROOT / "emulator", tmp_path_factory.mktemp("emulator-wheel"))) as wheel:
        yield wheel


def _dist_info(wheel: zipfile.ZipFile, name: str) -> str:
    (path,) = [n for n in wheel.namelist() if n.endswith(f".dist-info/{name}")]
    return wheel.read(path).decode()


def _entry_points(wheel: zipfile.ZipFile) -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str  # keep the names' case
    parser.read_string(_dist_info(wheel, "entry_points.txt"))
    return {section: dict(parser[section]) for section in parser.sections()}


def _metadata(wheel: zipfile.ZipFile):
    return email.parser.HeaderParser().parsestr(_dist_info(wheel, "METADATA"))


def test_the_provider_wheel_holds_no_emulator_no_demo_and_no_console_script(provider_wheel):
    names = provider_wheel.namelist()
    packaged = [n for n in names if not n.startswith(f"airflow_provider_carecycle-{VERSION}.dist-info/")]
    assert packaged and all(n.startswith("airflow_provider_carecycle/") for n in packaged), packaged
    assert not [n for n in packaged if "emulator" in n or n.endswith("/demo.py") or "pytest" in n]
    assert "airflow_provider_carecycle/hooks/carecycle.py" in names
    assert {
        f"airflow_provider_carecycle/carecloud/{m}.py" for m in ("__init__", "hook", "exceptions", "params", "mapping")
    } <= set(names)
    assert _entry_points(provider_wheel) == {
        "apache_airflow_provider": {"provider_info": "airflow_provider_carecycle.get_provider_info:get_provider_info"}
    }


def test_the_provider_wheel_is_marked_typed(provider_wheel):
    # PEP 561: without py.typed a user's type checker ignores the annotations that make typecheck checks
    assert "airflow_provider_carecycle/py.typed" in provider_wheel.namelist()
    assert "Typing :: Typed" in _metadata(provider_wheel).get_all("Classifier")


def test_the_provider_pins_the_emulator_of_its_own_version_in_an_extra(provider_wheel):
    metadata = _metadata(provider_wheel)
    assert metadata["Version"] == VERSION
    requires = metadata.get_all("Requires-Dist")
    assert f"carecycle-emulator=={VERSION}; extra == 'emulator'" in requires
    # at run time (no extra) the provider needs neither the emulator nor pytest
    assert not [r for r in requires if "extra ==" not in r and ("emulator" in r or "pytest" in r)]


def test_the_emulator_wheel_has_the_package_the_scripts_and_the_pytest_plugin(emulator_wheel):
    names = emulator_wheel.namelist()
    for module in ("__init__", "base", "cli", "pytest_plugin", "carecycle/server", "carecloud/server"):
        assert f"carecycle_emulator/{module}.py" in names
    packaged = [n for n in names if ".dist-info/" not in n]
    assert all(n.startswith("carecycle_emulator/") for n in packaged), packaged
    assert _entry_points(emulator_wheel) == {
        "console_scripts": {
            "carecycle-emulator": "carecycle_emulator.carecycle.cli:main",
            "carecloud-crm-emulator": "carecycle_emulator.carecloud.cli:main",
        },
        "pytest11": {"carecycle_emulator": "carecycle_emulator.pytest_plugin"},
    }
    metadata = _metadata(emulator_wheel)
    assert (metadata["Name"], metadata["Version"]) == ("carecycle-emulator", VERSION)
    # standard library only: every requirement belongs to the `test` extra
    assert all("extra == 'test'" in r for r in metadata.get_all("Requires-Dist") or [])
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_the_provider_sdist_leaves_the_emulator_and_the_repository_tools_out(tmp_path):
    with tarfile.open(_build("sdist", ROOT, tmp_path)) as sdist:
        names = [n.split("/", 1)[1] for n in sdist.getnames() if "/" in n]
    assert "example_dags/carecycle_crm_lead_feed.py" in names and "docs/index.md" in names
    assert "CHANGELOG.md" in names and "README.md" in names
    assert not [n for n in names if n.split("/")[0] in ("emulator", "dev", "tests", "benchmarks")]


def test_the_emulator_sdist_holds_the_license(tmp_path):
    """A wheel built from the sdist (what pip does with an sdist) carries the license too: emulator/LICENSE is a copy
    of the repository's, not a symlink out of the project, which the sdist leaves out."""
    assert not (ROOT / "emulator" / "LICENSE").is_symlink()
    assert (ROOT / "emulator" / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()
    with tarfile.open(_build("sdist", ROOT / "emulator", tmp_path)) as sdist:
        names = [n.split("/", 1)[1] for n in sdist.getnames() if "/" in n]
    assert "LICENSE" in names


def test_the_installed_emulator_is_the_one_in_this_repository():
    """``make`` installs ``./emulator`` editable; a carecycle-emulator from anywhere else would test nothing here."""
    import carecycle_emulator

    assert Path(carecycle_emulator.__file__).resolve().is_relative_to(ROOT / "emulator" / "src"), sys.prefix
    assert carecycle_emulator.__version__ == VERSION


def test_the_metadata_declares_what_users_check(provider_wheel):
    """The Airflow range, the tested Python, the extras for the optional integrations, fsspec (imported by
    storage.py), and the project's links to its changelog and docs."""
    metadata = _metadata(provider_wheel)
    requires = metadata.get_all("Requires-Dist")
    assert "apache-airflow<4,>=2.10" in requires
    assert any(r.startswith("fsspec>=") and "extra ==" not in r for r in requires)
    assert {"openlineage", "common-sql", "emulator", "redis"} <= set(metadata.get_all("Provides-Extra"))
    assert any(r.startswith("apache-airflow-providers-openlineage") and "extra == 'openlineage'" in r for r in requires)
    assert any(r.startswith("apache-airflow-providers-common-sql") and "extra == 'common-sql'" in r for r in requires)
    pythons = [c for c in metadata.get_all("Classifier") if c.startswith("Programming Language :: Python :: 3.")]
    assert pythons == ["Programming Language :: Python :: 3.11"]  # what make test runs


#: modules the package imports that come with an extra's distribution rather than under their own name
_IMPORTED_THROUGH = {
    "openlineage": "apache-airflow-providers-openlineage",
    "openlineage_sql": "apache-airflow-providers-openlineage",
}


def test_every_third_party_import_of_the_package_is_declared():
    """Each module the package imports, outside the standard library, is a dependency or comes with an extra."""
    import ast
    import importlib.metadata
    import re

    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    declared = {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower() for r in requirements}
    imported: set[str] = set()
    for path in (ROOT / "airflow_provider_carecycle").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", "airflow_provider_carecycle"}
    distributions = importlib.metadata.packages_distributions()
    undeclared = []
    for module in sorted(third_party):
        names = {_IMPORTED_THROUGH.get(module, "")} | {d.lower() for d in distributions.get(module, [module])}
        if module == "airflow":
            names.add("apache-airflow")
        if not names & declared:
            undeclared.append(module)
    assert undeclared == []
