"""Warehouse to careCycle: run a SQL query through any Airflow SQL connection and upload the rows as leads.

Rows are streamed with ``cursor.fetchmany`` and go through the same engine as
:class:`~airflow_provider_carecycle.operators.leads.CareCycleUploadLeadsOperator` (validation, deduplication,
batching at the rate limit, rejected file, checkpoint). ``apache-airflow-providers-common-sql`` is imported only
when the task runs.

.. seealso:: ``docs/operators/sql-to-carecycle.md``
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from airflow_provider_carecycle import lineage
from airflow_provider_carecycle._compat import Context, get_connection
from airflow_provider_carecycle.operators.leads import CareCycleLeadUploadBaseOperator
from airflow_provider_carecycle.outcome import Outcome

DEFAULT_FETCH_SIZE = 1000


def iter_rows(cursor: Any, fetch_size: int) -> Iterator[dict[str, Any]]:
    """Yield a DB-API cursor's rows as dicts keyed by column name, ``fetch_size`` rows at a time.

    :param cursor: a DB-API cursor after ``execute``.
    :param fetch_size: rows per ``fetchmany`` call.
    """
    if cursor.description is None:
        raise ValueError("The SQL statement returned no result set; use a SELECT query.")
    columns = [column[0] for column in cursor.description]
    while rows := cursor.fetchmany(fetch_size):
        for row in rows:
            yield dict(zip(columns, row, strict=True))


class SqlToCareCycleLeadsOperator(CareCycleLeadUploadBaseOperator):
    """Upload the rows of a SQL query to careCycle as leads.

    Columns are matched to lead fields by name, or through ``field_mapping`` (careCycle field -> column). Every
    option of :class:`~airflow_provider_carecycle.operators.leads.CareCycleLeadUploadBaseOperator` applies
    (``defaults``, ``rejected_path``, ``max_rejected_ratio``, ``batch_size``, ``checkpoint_path``, ``dry_run``,
    ...), and the return value is the same small summary dict.

    .. seealso:: ``docs/operators/sql-to-carecycle.md``

    :param sql: the query (or a path ending ``.sql``, rendered as a template); templated.
    :param sql_conn_id: any Airflow connection whose hook is a common-sql ``DbApiHook`` (Postgres, Snowflake,
        BigQuery, SQLite, ...).
    :param parameters: query parameters passed to ``cursor.execute``; templated.
    :param fetch_size: rows fetched per ``fetchmany`` call.
    :param kwargs: the shared lead upload options and :class:`CareCycleBaseOperator` arguments.
    """

    template_fields: tuple[str, ...] = ("sql", "parameters", *CareCycleLeadUploadBaseOperator.template_fields)
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {**CareCycleLeadUploadBaseOperator.template_fields_renderers, "sql": "sql"}
    ui_color = "#cdaaed"

    def __init__(
        self,
        *,
        sql: str,
        sql_conn_id: str,
        parameters: Mapping[str, Any] | Sequence[Any] | None = None,
        fetch_size: int = DEFAULT_FETCH_SIZE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # sql and parameters are templated: checked in execute, once rendered
        if not isinstance(sql_conn_id, str) or not sql_conn_id:
            raise ValueError("sql_conn_id must name an Airflow SQL connection.")
        if isinstance(fetch_size, bool) or not isinstance(fetch_size, int) or fetch_size < 1:
            raise ValueError(f"fetch_size must be a positive integer, got {fetch_size!r}.")
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.parameters = parameters
        self.fetch_size = fetch_size

    def _db_hook(self) -> Any:
        from airflow.providers.common.sql.hooks.sql import DbApiHook

        hook = get_connection(self.sql_conn_id).get_hook()
        if not isinstance(hook, DbApiHook):
            raise ValueError(
                f"Connection {self.sql_conn_id!r} has a {type(hook).__name__}, not a SQL (DbApiHook) connection."
            )
        return hook

    def check_rendered_arguments(self) -> None:
        """Also check the rendered query and its parameters.

        :raises ValueError: naming the argument.
        """
        super().check_rendered_arguments()
        if not isinstance(self.sql, str) or not self.sql.strip():
            raise ValueError("sql must render to a non-empty query (check its template or .sql file).")
        if self.parameters is not None and (
            isinstance(self.parameters, (str, bytes)) or not isinstance(self.parameters, (Mapping, Sequence))
        ):
            raise ValueError(
                f"parameters must render to a mapping or a sequence, got {type(self.parameters).__name__}."
            )

    def openlineage_datasets(self, outcome: Outcome | None) -> lineage.Datasets:
        """The upload's datasets, and the tables the query reads (with the rows read, when it reads one table)."""
        _, outputs = super().openlineage_datasets(outcome)
        namespace, tables = lineage.sql_datasets(self._db_hook(), self.sql)
        read = None if outcome is None or len(tables) != 1 else outcome.as_dict()["total"]
        return [lineage.input_dataset(namespace, table, read) for table in tables], outputs

    def iter_source(self, context: Context) -> Iterator[dict[str, Any]]:
        connection = self._db_hook().get_conn()
        try:
            cursor = connection.cursor()
            try:
                if self.parameters is None:
                    cursor.execute(self.sql)
                else:
                    cursor.execute(self.sql, self.parameters)
                yield from iter_rows(cursor, self.fetch_size)
            finally:
                cursor.close()
        finally:
            connection.close()
