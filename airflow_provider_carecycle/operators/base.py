"""What every careCycle operator shares: the connection argument, a lazily built hook, its outcome and OpenLineage
entry points, the run-time checks of templated arguments, and the refusal of renamed arguments.

Airflow's rule for templated arguments: ``__init__`` stores them exactly as given (a Jinja string, an XComArg, a
value mapped by ``.expand()``), and they are checked in ``execute``, once rendered. So an operator's ``__init__``
checks only its non-templated arguments (and whether mutually exclusive ones were both given); the helpers here
check the rendered values, with one message format for every operator.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from typing import Any, NamedTuple

from airflow_provider_carecycle._compat import AirflowFailException, BaseOperator, Context
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
from airflow_provider_carecycle.lineage import Datasets, operator_lineage
from airflow_provider_carecycle.outcome import Outcome


class RunInterval(NamedTuple):
    """The ``[start, end)`` window a DAG run works on."""

    start: dt.datetime
    end: dt.datetime


def run_interval(dag_run: Any) -> RunInterval:
    """The run's data interval, or, for a run without one, the UTC day before the run was triggered.

    A run without a data interval is a manual Airflow 3 run triggered without a logical date
    (``airflow dags trigger`` without ``--logical-date``, the REST API with ``"logical_date": null``, the UI's
    default); it is given ``[midnight UTC the day before run_after, midnight UTC of run_after's day)``, the same
    day a daily interval timetable gives a manual run *with* a logical date. Usable in templates too:
    ``user_defined_macros={"run_interval": run_interval}`` and ``{{ run_interval(dag_run).start | ds }}``.

    :param dag_run: the run (``context["dag_run"]``, or ``dag_run`` in a template).
    :raises ValueError: when the run has neither a data interval nor a ``run_after``.
    """
    start = getattr(dag_run, "data_interval_start", None)
    end = getattr(dag_run, "data_interval_end", None)
    if start is not None and end is not None:
        return RunInterval(start, end)
    run_after = getattr(dag_run, "run_after", None)
    if run_after is None:
        raise ValueError("This DAG run has no data interval and no run_after: pass the interval's bounds explicitly.")
    if run_after.tzinfo is None:
        run_after = run_after.replace(tzinfo=dt.timezone.utc)
    day_end = dt.datetime.combine(run_after.astimezone(dt.timezone.utc).date(), dt.time(), dt.timezone.utc)
    return RunInterval(day_end - dt.timedelta(days=1), day_end)


def context_interval(context: Context) -> RunInterval:
    """:func:`run_interval` of the running task's DAG run (``context["dag_run"]``).

    :param context: the task's context.
    :raises ValueError: when the context holds no DAG run (the operator's ``execute`` was called directly).
    """
    dag_run = context.get("dag_run")
    if dag_run is None:
        raise ValueError("No DAG run in the task context: pass the interval's bounds explicitly.")
    return run_interval(dag_run)


class InvalidArgumentError(AirflowFailException, ValueError):
    """A templated argument rendered to an invalid value. The task fails at once: a retry would render the same."""


@contextmanager
def rendered_arguments() -> Iterator[None]:
    """Turn the ``ValueError`` of a rendered-argument check into :class:`InvalidArgumentError` (no retries)."""
    try:
        yield
    except InvalidArgumentError:
        raise
    except ValueError as err:
        raise InvalidArgumentError(str(err)) from err


def rendered_path(name: str, value: Any, *, optional: bool = False) -> Any:
    """A rendered path argument: ``None`` when optional and not given; blank text is an error, never "off".

    :param name: the argument, named in the message.
    :param value: its rendered value (text, ``pathlib.Path`` or ``ObjectStoragePath``).
    :param optional: whether ``None`` means "not used".
    :raises ValueError: for ``None`` when required, or for text that rendered empty.
    """
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name} is required (an object storage URI or a local path).")
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(
                f"{name} rendered to an empty string; check its template "
                + ("(pass None to turn it off)." if optional else "(it must give an object storage URI or a path).")
            )
        return value.strip()
    return value


def rendered_text(name: str, value: Any) -> str:
    """A rendered, required text argument (an id, a query), stripped.

    :param name: the argument, named in the message.
    :param value: its rendered value.
    :raises ValueError: when it is not text or is blank.
    """
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a non-empty string (check its template), got {type(value).__name__}.")
    if not value.strip():
        raise ValueError(f"{name} rendered to an empty string; check its template.")
    return value.strip()


#: one name per concept in the operators' arguments: a name the provider used before -> the one it uses now (a page
#: size is ``per_page`` after the careCycle API's own ``perPage``, for the CRM too; every lead upload maps its fields
#: with ``field_mapping``)
RENAMED_ARGUMENTS = {"page_size": "per_page", "crm_field_mapping": "field_mapping"}


def refuse_renamed_arguments(operator: str, given: Mapping[str, Any], renamed: Mapping[str, str]) -> None:
    """Refuse an argument passed under an old name, with a message naming the new one (rather than Airflow's
    "Invalid arguments were passed").

    :param operator: the operator's class name, for the message.
    :param given: the keyword arguments the operator received.
    :param renamed: old name -> new name.
    :raises TypeError: for the first old name given.
    """
    for old, new in renamed.items():
        if old in given:
            raise TypeError(f"{operator} has no argument {old!r}: it is called {new!r}; pass {new}=... instead.")


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
        #: what the task reported at the end of ``execute`` (its XCom value is ``outcome.as_dict()``)
        self.outcome: Outcome | None = None

    @cached_property
    def hook(self) -> CareCycleHook:
        """The careCycle hook, built on first use (at run time, never at DAG parse time)."""
        return CareCycleHook(self.carecycle_conn_id, **self.hook_params)

    # -- OpenLineage: apache-airflow-providers-openlineage calls these (and only then is OpenLineage imported) ---

    def openlineage_datasets(self, outcome: Outcome | None) -> Datasets:
        """The task's OpenLineage ``(inputs, outputs)``, each operator its own (datasets of
        :mod:`~airflow_provider_carecycle.lineage`), with row counts from ``outcome`` once the task finished.

        :param outcome: ``None`` when the task starts (its arguments are rendered), else ``self.outcome``.
        """
        raise NotImplementedError

    def get_openlineage_facets_on_start(self) -> Any:
        """The task's OpenLineage inputs and outputs, known once its arguments are rendered (no counts yet)."""
        return operator_lineage(self.task_id, lambda: self.openlineage_datasets(None))

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The task's OpenLineage inputs and outputs, with the row counts of its outcome (never record contents).

        :param task_instance: the finished task instance.
        """
        return operator_lineage(self.task_id, lambda: self.openlineage_datasets(self.outcome))
