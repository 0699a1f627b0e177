"""The one place that knows where Airflow keeps the names this provider uses, on 2.10, 2.11 and 3.0 onwards.

Every other module imports Airflow names from here. Airflow moved its authoring API into ``airflow.sdk`` one name
at a time over several releases (3.0 has ``airflow.sdk.BaseOperator`` but not ``BaseHook``; ``conf`` arrived in
``airflow.sdk`` with 3.2), so each name is looked up on its own: in the newest module that can have it first,
then in the older ones, the first that has it wins. No major-version switch decides for a whole group.

A name is resolved the first time it is imported from this module (PEP 562 ``__getattr__``) and then cached, so
importing a hook does not import Airflow's trigger or object-storage machinery. A name found nowhere raises an
``ImportError`` that names it and every module tried.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

from airflow import __version__ as AIRFLOW_VERSION

if TYPE_CHECKING:
    from airflow.exceptions import AirflowProviderDeprecationWarning
    from airflow.sdk import (
        BaseHook,
        BaseOperator,
        BaseSensorOperator,
        Context,
        ObjectStoragePath,
        PokeReturnValue,
        conf,
    )
    from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException, TaskDeferred
    from airflow.sdk.log import mask_secret
    from airflow.triggers.base import BaseTrigger, TriggerEvent

#: For behaviour that differs between majors (``dag.test(logical_date=...)`` vs ``execution_date``, the executors
#: SQLite allows), never for where a name lives: that is :data:`_LOCATIONS`.
AIRFLOW_V_3_0_PLUS = int(AIRFLOW_VERSION.split(".", 1)[0]) >= 3

#: Where each name lives, newest module first. Checked by importing on 2.10.5, 2.11.2, 3.0.6, 3.1.8, 3.2.2, 3.3.2:
#: ``airflow.sdk`` has BaseOperator, BaseSensorOperator, PokeReturnValue, Context and ObjectStoragePath from 3.0,
#: BaseHook from 3.1 and conf from 3.2; ``airflow.sdk.exceptions`` has AirflowException from 3.1 and
#: AirflowFailException, AirflowNotFoundException and TaskDeferred from 3.2 (the same classes ``airflow.exceptions``
#: still exports); AirflowProviderDeprecationWarning is in ``airflow.exceptions`` on every line.
_LOCATIONS: dict[str, tuple[str, ...]] = {
    "BaseHook": ("airflow.sdk", "airflow.hooks.base"),
    "BaseOperator": ("airflow.sdk", "airflow.models.baseoperator"),
    "BaseSensorOperator": ("airflow.sdk", "airflow.sensors.base"),
    "PokeReturnValue": ("airflow.sdk", "airflow.sensors.base"),
    "Context": ("airflow.sdk", "airflow.utils.context"),
    "ObjectStoragePath": ("airflow.sdk", "airflow.io.path"),
    "conf": ("airflow.sdk", "airflow.configuration"),
    "mask_secret": ("airflow.sdk.log", "airflow.utils.log.secrets_masker"),
    "AirflowException": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "AirflowFailException": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "AirflowNotFoundException": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "TaskDeferred": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "AirflowProviderDeprecationWarning": ("airflow.exceptions",),
    "BaseTrigger": ("airflow.triggers.base",),
    "TriggerEvent": ("airflow.triggers.base",),
}


def _first(name: str, *modules: str) -> Any:
    """``name`` from the first of ``modules`` (newest first) that can be imported and has it.

    :param name: the attribute to look up.
    :param modules: dotted module names, newest location first.
    :raises ImportError: no module has it; the message names ``name``, this Airflow's version and every module
        tried with why it did not have the name.
    """
    tried = []
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            tried.append(f"{module_name} (not importable: {exc})")
            continue
        try:
            return getattr(module, name)
        except AttributeError:
            tried.append(f"{module_name} (no {name})")
        except ImportError as exc:  # a lazy module (airflow.sdk) whose submodule for the name fails to import
            tried.append(f"{module_name} (its {name} is not importable: {exc})")
    raise ImportError(
        f"airflow-provider-carecycle cannot find {name!r} in Apache Airflow {AIRFLOW_VERSION}; tried "
        + "; ".join(tried)
    )


def __getattr__(name: str) -> Any:
    """Resolve an Airflow name on first use and cache it in this module (PEP 562)."""
    if name not in _LOCATIONS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = _first(name, *_LOCATIONS[name])
    globals()[name] = value
    return value


def _get(name: str) -> Any:
    """A name for this module's own code, which does not go through :func:`__getattr__`."""
    return globals()[name] if name in globals() else __getattr__(name)


def __dir__() -> list[str]:
    return sorted(__all__)


def default_deferrable() -> bool:
    """``[operators] default_deferrable``, read when an operator is built (not at import time)."""
    return _get("conf").getboolean("operators", "default_deferrable", fallback=False)


def get_connection(conn_id: str) -> Any:
    """The Airflow connection ``conn_id``, read the way this Airflow's own hooks read it, with no deprecation warning.

    That is ``BaseHook.get_connection``, except on Airflow 3.0: its ``airflow.sdk`` has ``Connection`` but not yet
    ``BaseHook``, and the classic ``BaseHook.get_connection`` goes through ``Connection.get_connection_from_secrets``,
    which, where the Task SDK's supervisor channel is set up (a task, the triggerer, the DAG processor), warns that
    it is deprecated and hands over to ``airflow.sdk.Connection.get``. There the SDK is asked directly, and the
    password and extra masked, as 3.0 does after that hand-over. Elsewhere on 3.0 (the API server, the CLI) the
    classic path reads the secrets backends and the metadata DB without a warning. From 3.1 ``BaseHook`` is the Task
    SDK's; Airflow 2 has no Task SDK.

    :param conn_id: the connection id.
    :raises AirflowNotFoundException: when no secrets backend defines it.
    """
    base_hook = _get("BaseHook")
    task_runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    if base_hook.__module__.startswith("airflow.sdk") or not hasattr(task_runner, "SUPERVISOR_COMMS"):
        return base_hook.get_connection(conn_id)
    connection = _first("Connection", "airflow.sdk").get(conn_id)
    for secret in (connection.password, connection.extra):
        if secret:
            _get("mask_secret")(secret)
    return connection


def never_expire() -> Any:
    """AIP-103's ``NEVER_EXPIRE`` retention for ``task_state_store.set()`` (Airflow 3.3+ only: call it only when the
    task context has a ``task_state_store``; elsewhere it raises ``ImportError``)."""
    return _first("NEVER_EXPIRE", "airflow.sdk.execution_time.context")


__all__ = [
    "AIRFLOW_V_3_0_PLUS",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowProviderDeprecationWarning",
    "BaseHook",
    "BaseOperator",
    "BaseSensorOperator",
    "BaseTrigger",
    "Context",
    "never_expire",
    "ObjectStoragePath",
    "PokeReturnValue",
    "TaskDeferred",
    "TriggerEvent",
    "conf",
    "default_deferrable",
    "get_connection",
    "mask_secret",
]


# -- lineage, assets, links, metrics: more Airflow names, each resolved newest location first --------------------
# Kept apart from the section above so the by-symbol rewrite of this module can take it over as is.

if TYPE_CHECKING:  # the type checker runs against Airflow 3 (make typecheck); the fallbacks below are runtime only
    from airflow.sdk import Asset, AssetAlias, BaseOperatorLink
    from airflow.sdk.execution_time.xcom import XCom
    from airflow.sdk.observability.stats import Stats
else:
    try:  # Airflow 3
        from airflow.sdk import Asset, AssetAlias
    except ImportError:  # Airflow 2.10 / 2.11: the same idea, called Dataset
        from airflow.datasets import Dataset as Asset
        from airflow.datasets import DatasetAlias as AssetAlias

    try:  # Airflow 3
        from airflow.sdk import BaseOperatorLink
    except ImportError:  # Airflow 2
        from airflow.models.baseoperatorlink import BaseOperatorLink

    try:  # Airflow 3: what a task (and the API server's link lookup) reads XComs through
        from airflow.sdk.execution_time.xcom import XCom
    except ImportError:  # Airflow 2
        from airflow.models.xcom import XCom

    try:  # Airflow 3.1+
        from airflow.sdk.observability.stats import Stats
    except ImportError:
        try:  # Airflow 3.0
            from airflow.observability.stats import Stats
        except ImportError:  # Airflow 2
            from airflow.stats import Stats

__all__ += ["Asset", "AssetAlias", "BaseOperatorLink", "Stats", "XCom"]
