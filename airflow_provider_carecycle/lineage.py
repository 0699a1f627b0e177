"""OpenLineage for the provider's operators: dataset names per the OpenLineage naming spec, and row-count facets.

Naming (namespace / name):

* careCycle API: ``carecycle://<host>`` / ``leads``, ``customers``, ``customers/calls``, ``campaigns/<id>``
  (``campaigns`` for a snapshot that lists campaigns by status);
* CareCloud CRM: ``carecloud://<project domain>`` / ``customers``;
* files: ``file`` / ``<absolute path>`` for local files, ``<scheme>://<bucket>`` / ``<key>`` for object storage;
* SQL: the connection's OpenLineage namespace (from the common-sql hook when it knows it, else
  ``<conn_type>://<host>[:<port>]``) / the tables the query reads, as the OpenLineage SQL parser finds them.

Facets carry counts only (``outputStatistics``/``inputStatistics`` row counts: uploaded, rejected, exported, read):
**never record contents**. ``apache-airflow-providers-openlineage`` is imported inside these functions only, so the
provider works without it; without it the operators' ``get_openlineage_facets_*`` methods are never called.

.. seealso:: ``docs/lineage.md``
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
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


def sql_datasets(operator: Any) -> tuple[str, list[str]]:
    """``(namespace, table names)`` a SQL transfer reads; table names are empty when the parser cannot tell.

    :param operator: a ``SqlToCareCycleLeadsOperator`` (rendered).
    """
    hook = operator._db_hook()
    connection = hook.get_connection(getattr(hook, hook.conn_name_attr))
    namespace = None
    try:
        info = hook.get_openlineage_database_info(connection)
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

        tables = [table.qualified_name for table in parse([operator.sql]).in_tables]
    except Exception:  # no parser, or a statement it does not understand: the namespace alone is still true
        tables = []
    return namespace, tables


# -- building the OperatorLineage --------------------------------------------------------------------------------


def _dataset(kind: str, namespace: str, name: str, rows: int | None) -> Any:
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import InputDatasetFacet, OutputDatasetFacet

    if kind == "input":
        input_facets: dict[str, InputDatasetFacet] = {}
        if rows is not None:
            from openlineage.client.facet_v2 import input_statistics_input_dataset

            input_facets["inputStatistics"] = input_statistics_input_dataset.InputStatisticsInputDatasetFacet(
                rowCount=rows
            )
        return InputDataset(namespace=namespace, name=name, inputFacets=input_facets)
    output_facets: dict[str, OutputDatasetFacet] = {}
    if rows is not None:
        from openlineage.client.facet_v2 import output_statistics_output_dataset

        output_facets["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
            rowCount=rows
        )
    return OutputDataset(namespace=namespace, name=name, outputFacets=output_facets)


def _file(kind: str, path: Any, rows: int | None) -> Any:
    namespace, name = file_dataset_name(path)
    return _dataset(kind, namespace, name, rows)


def _count(outcome: Mapping[str, Any] | None, key: str) -> int | None:
    if outcome is None or outcome.get(key) is None:
        return None
    return int(outcome[key])


def _upload_lineage(operator: Any, outcome: Mapping[str, Any] | None) -> tuple[list[Any], list[Any]]:
    from airflow_provider_carecycle.transfers.carecloud import CareCloudCrmToCareCycleLeadsOperator
    from airflow_provider_carecycle.transfers.sql import SqlToCareCycleLeadsOperator

    inputs: list[Any] = []
    read = _count(outcome, "total")
    if isinstance(operator, CareCloudCrmToCareCycleLeadsOperator):
        crm_rows = operator.crm_rows if outcome is not None else None
        inputs.append(_dataset("input", carecloud_namespace(operator.carecloud_hook.base_url), CUSTOMERS, crm_rows))
    elif isinstance(operator, SqlToCareCycleLeadsOperator):
        namespace, tables = sql_datasets(operator)
        inputs.extend(_dataset("input", namespace, table, read if len(tables) == 1 else None) for table in tables)
    elif getattr(operator, "source_path", None):
        inputs.append(_file("input", operator.source_path, read))
    outputs: list[Any] = []
    if not getattr(operator, "is_dry_run", False):
        namespace = carecycle_namespace(operator.hook.base_url)
        outputs.append(_dataset("output", namespace, LEADS, _count(outcome, "uploaded")))
    if getattr(operator, "rejected_path", None):
        outputs.append(_file("output", operator.rejected_path, _count(outcome, "rejected")))
    return inputs, outputs


def _campaign_names(operator: Any) -> list[str]:
    """``campaigns/<id>`` per rendered campaign id of a snapshot or sensor, else ``campaigns`` (a listing)."""
    ids = getattr(operator, "campaign_ids", None) or getattr(operator, "campaign_id", None) or []
    if isinstance(ids, str):
        ids = [ids]
    return [f"{CAMPAIGNS}/{campaign_id}" for campaign_id in ids if isinstance(campaign_id, str)] or [CAMPAIGNS]


def operator_lineage(operator: Any, *, complete: bool) -> Any:
    """The ``OperatorLineage`` of a (rendered) careCycle operator, with counts when ``complete``.

    :param operator: the task, after rendering (and, when ``complete``, after ``execute``).
    :param complete: whether the task finished, so its counts (kept by
        :func:`airflow_provider_carecycle.outcome.record_outcome`) belong in the facets.
    :return: an ``OperatorLineage``, or ``None`` when the operator is not one of this provider's.
    """
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_provider_carecycle.operators.campaigns import CareCycleCampaignSnapshotOperator
    from airflow_provider_carecycle.operators.customers import (
        CareCycleExtractCustomerCallsOperator,
        CareCycleExtractCustomersOperator,
    )
    from airflow_provider_carecycle.operators.leads import CareCycleLeadUploadBaseOperator
    from airflow_provider_carecycle.outcome import FileOutcome
    from airflow_provider_carecycle.sensors.campaigns import CareCycleCampaignStatsSensor

    reported = getattr(operator, "outcome", None) if complete else None
    if reported is None:
        outcome = None
    else:
        outcome = reported.asset_extra() if isinstance(reported, FileOutcome) else reported.as_dict()
    inputs: list[Any] = []
    outputs: list[Any] = []
    if isinstance(operator, CareCycleLeadUploadBaseOperator):
        inputs, outputs = _upload_lineage(operator, outcome)
    elif isinstance(operator, (CareCycleExtractCustomersOperator, CareCycleExtractCustomerCallsOperator)):
        namespace = carecycle_namespace(operator.hook.base_url)
        rows = _count(outcome, "count")
        if isinstance(operator, CareCycleExtractCustomersOperator):
            inputs.append(_dataset("input", namespace, CUSTOMERS, rows))
        else:
            if operator.customer_ids_path:
                inputs.append(_file("input", operator.customer_ids_path, _count(outcome, "customers")))
            inputs.append(_dataset("input", namespace, CALLS, rows))
        outputs.append(_file("output", operator.output_path, rows))
    elif isinstance(operator, CareCycleCampaignSnapshotOperator):
        namespace = carecycle_namespace(operator.hook.base_url)
        inputs.extend(_dataset("input", namespace, name, None) for name in _campaign_names(operator))
        outputs.append(_file("output", operator.output_path, _count(outcome, "count")))
    elif isinstance(operator, CareCycleCampaignStatsSensor):
        namespace = carecycle_namespace(operator.hook.base_url)
        inputs.extend(_dataset("input", namespace, name, None) for name in _campaign_names(operator))
    else:
        return None
    return OperatorLineage(inputs=inputs, outputs=outputs)


def safe_operator_lineage(operator: Any, *, complete: bool) -> Any:
    """:func:`operator_lineage`, logging (by operator and error type only) instead of raising.

    :param operator: the task.
    :param complete: whether the task finished.
    """
    try:
        return operator_lineage(operator, complete=complete)
    except Exception as err:  # lineage never fails a task; the message could echo a value, so only its type
        log.warning("No OpenLineage for task %s: %s.", getattr(operator, "task_id", "?"), type(err).__name__)
        return None
