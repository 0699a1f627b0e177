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
