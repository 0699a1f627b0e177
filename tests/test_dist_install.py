"""The README's install from the built files works.

``pip install --find-links dist 'airflow-provider-carecycle[emulator]'`` in a fresh venv gives the provider and the
emulator of this version, not editable, and Airflow lists the provider. Run by ``make dist`` (which sets
``CARECYCLE_DIST`` to the folder it built; skipped otherwise). The install is the README's command, run with uv
(pip's arguments, uv's speed) and pinned by ``constraints/airflow-3.3.txt`` as the README tells users to pin theirs;
uv takes every package from its cache (``--offline``) when it holds them all, else from PyPI.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import airflow_provider_carecycle
from tests.test_docs import code_blocks
from tests.test_packaging import _uv

ROOT = Path(__file__).resolve().parent.parent
VERSION = airflow_provider_carecycle.__version__
DIST = os.environ.get("CARECYCLE_DIST")

pytestmark = pytest.mark.skipif(not DIST, reason="make dist runs it, on the files it built (CARECYCLE_DIST)")


def readme_install_from_dist() -> list[str]:
    """The arguments of the README's ``pip install --find-links dist ...`` line (after ``pip install``)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for block in code_blocks(readme):
        for line in block.code.splitlines():
            words = shlex.split(line, comments=True)
            if words[:3] == ["pip", "install", "--find-links"]:
                return words[2:]
    raise AssertionError("README.md shows no `pip install --find-links dist ...` line")


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{command[:4]}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done


def test_the_readme_install_from_dist_works_in_a_fresh_venv(tmp_path: Path) -> None:
    args = readme_install_from_dist()
    assert args == ["--find-links", "dist", "airflow-provider-carecycle[emulator]"], args
    uv = _uv()
    assert uv, "uv is not installed (make creates .venv/bin/uv)"
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    install = [uv, "pip", "install", "--quiet", "--python", str(python), "-c", "constraints/airflow-3.3.txt"]
    args = [str(ROOT / DIST) if a == "dist" else a for a in args]
    offline = subprocess.run([*install, "--offline", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if offline.returncode != 0:  # a package not in uv's cache: the same install, from PyPI
        _run([*install, *args], cwd=ROOT)

    probe = (
        "import importlib.metadata as m, json, airflow_provider_carecycle as p, carecycle_emulator as e\n"
        "print(json.dumps({'provider': [m.version('airflow-provider-carecycle'), p.__file__],"
        " 'emulator': [m.version('carecycle-emulator'), e.__file__], 'airflow': m.version('apache-airflow')}))"
    )
    found = json.loads(_run([str(python), "-c", probe], cwd=tmp_path).stdout)
    site = str(venv.resolve())
    assert found["provider"][0] == found["emulator"][0] == VERSION
    assert found["provider"][1].startswith(site) and found["emulator"][1].startswith(site)  # installed, not editable
    assert found["airflow"] == "3.3.2"
    _run([str(venv / "bin" / "carecycle-emulator"), "--help"])

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path / "airflow-home")
    listed = _run([str(venv / "bin" / "airflow"), "providers", "list", "-o", "json"], env=env, cwd=tmp_path).stdout
    providers = {p["package_name"]: p["version"] for p in json.loads(listed[listed.index("[") :])}
    assert providers.get("airflow-provider-carecycle") == VERSION
