"""What every careCycle operator shares: the connection argument and a lazily built hook."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

from airflow_provider_carecycle._compat import BaseOperator
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook


class CareCycleBaseOperator(BaseOperator):
    """Base for careCycle operators. Nothing is looked up or connected until the task runs.

    :param carecycle_conn_id: the careCycle Airflow connection.
    :param hook_params: extra keyword arguments for :class:`CareCycleHook` (``timeout``, ``max_retries``,
        ``requests_per_minute``, ...).
    """

    def __init__(
        self,
        *,
        carecycle_conn_id: str = CareCycleHook.default_conn_name,
        hook_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.carecycle_conn_id = carecycle_conn_id
        self.hook_params = dict(hook_params or {})

    @cached_property
    def hook(self) -> CareCycleHook:
        """The careCycle hook, built on first use (at run time, never at DAG parse time)."""
        return CareCycleHook(self.carecycle_conn_id, **self.hook_params)

    # -- OpenLineage (issue 14): apache-airflow-providers-openlineage calls these; imported only then ------------

    def get_openlineage_facets_on_start(self) -> Any:
        """The task's OpenLineage inputs and outputs, known once its arguments are rendered (no counts yet)."""
        from airflow_provider_carecycle.lineage import safe_operator_lineage

        return safe_operator_lineage(self, complete=False)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The task's OpenLineage inputs and outputs, with the row counts it reported (never record contents).

        :param task_instance: the finished task instance.
        """
        from airflow_provider_carecycle.lineage import safe_operator_lineage

        return safe_operator_lineage(self, complete=True)
