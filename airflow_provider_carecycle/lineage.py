"""OpenLineage naming and datasets for the provider's operators: namespaces and names per the OpenLineage naming
spec, and datasets with row-count facets.

Each operator (and the sensor) builds its own lineage from these, in its ``get_openlineage_facets_on_start`` and
``get_openlineage_facets_on_complete`` (see ``CareCycleBaseOperator.openlineage_datasets``); nothing here knows an
operator class.

Naming (namespace / name):

* careCycle API: ``carecycle://<host>`` / ``leads``, ``customers``, ``customers/calls``, ``campaigns/<id>``
  (``campaigns`` for a snapshot that lists campaigns by status);
* CareCloud CRM: ``carecloud://<project domain>`` / ``customers``;
* files: ``file`` / ``<absolute path>`` for local files, ``<scheme>://<bucket>`` / ``<key>`` for object storage;
* SQL: the connection's OpenLineage namespace (from the common-sql hook when it knows it, else
  ``<conn_type>://<host>[:<port>]``) / the tables the query reads, as the OpenLineage SQL parser finds them.

Facets carry counts only (``outputStatistics``/``inputStatistics`` row counts: uploaded, rejected, exported, read):
**never record contents**. The OpenLineage client is imported inside these functions only, so the provider works
without it; without ``apache-airflow-providers-openlineage`` the operators' ``get_openlineage_facets_*`` methods
are never called.

.. seealso:: ``docs/lineage.md``
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_carecycle.hooks._http import url_authority

log = logging.getLogger(__name__)

#: the careCycle dataset names
LEADS = "leads"
CUSTOMERS = "customers"
CALLS = "customers/calls"
CAMPAIGNS = "campaigns"


def carecycle_namespace(base_url: str) -> str:
    """``carecycle://<host[:port]>`` for a careCycle base URL (``https://api.carecycle.ai`` -> ``carecycle://api.carecycle.ai``).

    :param base_url: the hook's base URL.
    """
    return f"carecycle://{url_authority(base_url)}"


def carecloud_namespace(base_url: str) -> str:
    """``carecloud://<project domain>`` for a CareCloud CRM base URL.

    :param base_url: the hook's base URL (``https://<domain>/webservice/rest-api/...``).
    """
    return f"carecloud://{url_authority(base_url)}"


def file_dataset_name(path: Any) -> tuple[str, str]:
    """``(namespace, name)`` of a file per the OpenLineage naming spec.

    :param path: an ``ObjectStoragePath``, a URI (``s3://bucket/key``, ``file:///...``) or a local path.
    """
    from airflow_provider_carecycle.storage import to_path

    resolved = to_path(path)
    protocol = resolved.protocol if isinstance(resolved.protocol, str) else resolved.protocol[0]
    if protocol in ("file", "local"):
        return "file", resolved.path
    bucket = getattr(resolved, "bucket", "") or urlsplit(str(resolved)).netloc
    key = getattr(resolved, "key", "") or urlsplit(str(resolved)).path.lstrip("/")
    return f"{protocol}://{bucket}", key


def sql_datasets(db_hook: Any, sql: str) -> tuple[str, list[str]]:
    """``(namespace, table names)`` a SQL query reads; table names are empty when the parser cannot tell.

    :param db_hook: the common-sql ``DbApiHook`` the query runs on.
    :param sql: the (rendered) query.
    """
    connection = db_hook.get_connection(getattr(db_hook, db_hook.conn_name_attr))
    namespace = None
    try:
        info = db_hook.get_openlineage_database_info(connection)
    except Exception:
        info = None
    if info is not None:
        namespace = f"{info.scheme}://{info.authority}" if info.authority else f"{info.scheme}"
    if namespace is None:
        where = connection.host or ""
        if connection.port:
            where = f"{where}:{connection.port}"
        namespace = f"{connection.conn_type}://{where}"
    try:
        from openlineage_sql import parse

        tables = [table.qualified_name for table in parse([sql]).in_tables]
    except Exception:  # no parser, or a statement it does not understand: the namespace alone is still true
        tables = []
    return namespace, tables


def campaign_names(campaign_ids: Any) -> list[str]:
    """``campaigns/<id>`` per rendered campaign id (one id or a list), else ``campaigns`` (a listing).

    :param campaign_ids: a snapshot's ``campaign_ids`` or a sensor's ``campaign_id``, as rendered.
    """
    ids = campaign_ids or []
    if isinstance(ids, str):
        ids = [ids]
    return [f"{CAMPAIGNS}/{campaign_id}" for campaign_id in ids if isinstance(campaign_id, str)] or [CAMPAIGNS]


# -- datasets and the OperatorLineage ----------------------------------------------------------------------------


def input_dataset(namespace: str, name: str, rows: int | None = None) -> Any:
    """An OpenLineage ``InputDataset``, with an ``inputStatistics`` row count when ``rows`` is known.

    :param namespace: the dataset's namespace.
    :param name: its name.
    :param rows: the rows read, or ``None`` (before the task finished, or not counted).
    """
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.facet_v2 import InputDatasetFacet

    facets: dict[str, InputDatasetFacet] = {}
    if rows is not None:
        from openlineage.client.facet_v2 import input_statistics_input_dataset

        facets["inputStatistics"] = input_statistics_input_dataset.InputStatisticsInputDatasetFacet(rowCount=rows)
    return InputDataset(namespace=namespace, name=name, inputFacets=facets)


def output_dataset(namespace: str, name: str, rows: int | None = None) -> Any:
    """An OpenLineage ``OutputDataset``, with an ``outputStatistics`` row count when ``rows`` is known.

    :param namespace: the dataset's namespace.
    :param name: its name.
    :param rows: the rows written, or ``None`` (before the task finished, or not counted).
    """
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.facet_v2 import OutputDatasetFacet

    facets: dict[str, OutputDatasetFacet] = {}
    if rows is not None:
        from openlineage.client.facet_v2 import output_statistics_output_dataset

        facets["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=rows)
    return OutputDataset(namespace=namespace, name=name, outputFacets=facets)


def file_input(path: Any, rows: int | None = None) -> Any:
    """The ``InputDataset`` of a file read (:func:`file_dataset_name`).

    :param path: the file, as the operator rendered it.
    :param rows: the rows read, if known.
    """
    return input_dataset(*file_dataset_name(path), rows)


def file_output(path: Any, rows: int | None = None) -> Any:
    """The ``OutputDataset`` of a file written (:func:`file_dataset_name`).

    :param path: the file, as the operator rendered it.
    :param rows: the rows written, if known.
    """
    return output_dataset(*file_dataset_name(path), rows)


#: what an operator's ``openlineage_datasets`` returns: its input and output datasets
Datasets = tuple[Iterable[Any], Iterable[Any]]


def operator_lineage(task_id: str, datasets: Callable[[], Datasets]) -> Any:
    """The ``OperatorLineage`` of ``datasets()``, or ``None`` (logged by task and error type only) when they cannot
    be built: lineage never fails a task, and an error's message could echo a value.

    :param task_id: the task, for the log line.
    :param datasets: builds the task's ``(inputs, outputs)``.
    """
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage

        inputs, outputs = datasets()
        return OperatorLineage(inputs=list(inputs), outputs=list(outputs))
    except Exception as err:
        log.warning("No OpenLineage for task %s: %s.", task_id, type(err).__name__)
        return None
