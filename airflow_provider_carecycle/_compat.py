"""The one place that knows where Airflow keeps things in 2.10/2.11 and in 3.x.

Every other module imports Airflow names from here. Airflow 3 exposes its authoring API as ``airflow.sdk``;
Airflow 2 keeps the same classes under older paths. Nothing here does work beyond the imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow import __version__ as AIRFLOW_VERSION
from airflow.triggers.base import BaseTrigger, TriggerEvent

AIRFLOW_V_3_0_PLUS = int(AIRFLOW_VERSION.split(".", 1)[0]) >= 3

if TYPE_CHECKING or AIRFLOW_V_3_0_PLUS:
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
else:  # Airflow 2.10 / 2.11
    from airflow.configuration import conf
    from airflow.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException, TaskDeferred
    from airflow.hooks.base import BaseHook
    from airflow.io.path import ObjectStoragePath
    from airflow.models.baseoperator import BaseOperator
    from airflow.sensors.base import BaseSensorOperator, PokeReturnValue
    from airflow.utils.context import Context
    from airflow.utils.log.secrets_masker import mask_secret


def default_deferrable() -> bool:
    """``[operators] default_deferrable``, read when an operator is built (not at import time)."""
    return conf.getboolean("operators", "default_deferrable", fallback=False)


__all__ = [
    "AIRFLOW_V_3_0_PLUS",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "BaseHook",
    "BaseOperator",
    "BaseSensorOperator",
    "BaseTrigger",
    "Context",
    "ObjectStoragePath",
    "PokeReturnValue",
    "TaskDeferred",
    "TriggerEvent",
    "conf",
    "default_deferrable",
    "mask_secret",
]


# -- issue 14 (lineage, assets, links, metrics): more Airflow names, each resolved newest location first ---------
# Kept apart from the section above so the by-symbol rewrite of this module can take it over as is.

try:  # Airflow 3
    from airflow.sdk import Asset, AssetAlias
except ImportError:  # Airflow 2.10 / 2.11: the same idea, called Dataset
    from airflow.datasets import Dataset as Asset  # type: ignore[no-redef]
    from airflow.datasets import DatasetAlias as AssetAlias

try:  # Airflow 3
    from airflow.sdk import BaseOperatorLink
except ImportError:  # Airflow 2
    from airflow.models.baseoperatorlink import BaseOperatorLink  # type: ignore[no-redef]

try:  # Airflow 3: what a task (and the API server's link lookup) reads XComs through
    from airflow.sdk.execution_time.xcom import XCom
except ImportError:  # Airflow 2
    from airflow.models.xcom import XCom  # type: ignore[no-redef]

try:  # Airflow 3.1+
    from airflow.sdk.observability.stats import Stats
except ImportError:
    try:  # Airflow 3.0
        from airflow.observability.stats import Stats  # type: ignore[no-redef]
    except ImportError:  # Airflow 2
        from airflow.stats import Stats  # type: ignore[no-redef]

__all__ += ["Asset", "AssetAlias", "BaseOperatorLink", "Stats", "XCom"]
