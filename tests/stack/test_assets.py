"""Assets: the ``carecycle`` URI scheme is registered with a normaliser, and tasks emit events for what they wrote."""

from __future__ import annotations

import warnings
from datetime import datetime
from urllib.parse import urlsplit

import pytest

from airflow_provider_carecycle._compat import AIRFLOW_V_3_0_PLUS, Asset
from airflow_provider_carecycle.assets import leads_uri, normalize_carecycle_uri
from airflow_provider_carecycle.get_provider_info import get_provider_info


@pytest.mark.parametrize(
    ("uri", "normalised"),
    [
        ("carecycle://API.CareCycle.ai/leads/", "carecycle://api.carecycle.ai/leads"),
        ("carecycle://api.carecycle.ai/customers/calls", "carecycle://api.carecycle.ai/customers/calls"),
        ("carecycle://127.0.0.1:8080/campaigns/abc-123", "carecycle://127.0.0.1:8080/campaigns/abc-123"),
    ],
)
def test_the_normaliser_keeps_one_spelling_per_dataset(uri, normalised):
    assert normalize_carecycle_uri(urlsplit(uri)).geturl() == normalised


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("carecycle:///leads", "needs the API host"),
        ("carecycle://api.carecycle.ai/leads?id=1", "no query"),
        ("carecycle://api.carecycle.ai/patients", "not one of"),
        ("carecycle://api.carecycle.ai/campaigns/a/b", "not one of"),
    ],
)
def test_the_normaliser_rejects_what_is_not_a_carecycle_dataset(uri, message):
    with pytest.raises(ValueError, match=message):
        normalize_carecycle_uri(urlsplit(uri))


def test_the_scheme_is_registered_for_airflow_3_and_2():
    info = get_provider_info()
    handler = "airflow_provider_carecycle.assets.normalize_carecycle_uri"
    assert info["asset-uris"] == info["dataset-uris"] == [{"schemes": ["carecycle"], "handler": handler}]


def test_airflow_accepts_a_carecycle_asset_in_a_dag_and_normalises_it():
    from airflow import DAG

    leads = Asset("carecycle://API.carecycle.ai/leads/")
    with DAG("downstream_of_leads", schedule=[leads], start_date=datetime(2026, 1, 1)) as dag:
        pass
    assert leads.uri == "carecycle://api.carecycle.ai/leads"
    assert type(dag.timetable).__name__ in ("AssetTriggeredTimetable", "DatasetTriggeredTimetable")


def test_airflow_refuses_a_carecycle_uri_that_names_no_dataset():
    if AIRFLOW_V_3_0_PLUS:
        with pytest.raises(ValueError, match="not one of"):
            Asset("carecycle://api.carecycle.ai/patients")
    else:  # Airflow 2 only warns about URIs its normaliser refuses
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Asset("carecycle://api.carecycle.ai/patients")
        assert any("not one of" in str(w.message) for w in caught)


def test_leads_uri_names_the_host_the_leads_went_to():
    assert leads_uri("https://API.carecycle.ai/") == "carecycle://api.carecycle.ai/leads"


UPLOAD_DAG = """
from datetime import datetime
from airflow import DAG
from airflow_provider_carecycle._compat import Asset
from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator

with DAG("upload_with_asset", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
    CareCycleUploadLeadsOperator(
        task_id="upload",
        records=[
            {"firstName": "Zed", "phoneNumber": "2125550188", "postalCode": "10001", "externalId": "A-1"},
            {"firstName": "Zoe", "phoneNumber": "12", "postalCode": "10001", "externalId": "A-2"},
        ],
        max_rejected_ratio=1.0,
        outlets=[Asset("LEADS_URI")],
    )
"""


@pytest.mark.airflow_dag
def test_an_upload_fills_its_leads_asset_event_with_counts_only(run_dag_file, carecycle_emulator):
    uri = leads_uri(carecycle_emulator.url)
    if not AIRFLOW_V_3_0_PLUS:
        _register_dataset(uri)
    dag_run = run_dag_file(UPLOAD_DAG.replace("LEADS_URI", uri))

    assert dag_run.get_task_instance("upload").state == "success"
    events = _asset_events(uri)
    assert events == [{"total": 2, "uploaded": 1, "rejected": 1, "duplicates": 0}]


def _asset_events(uri: str) -> list[dict]:
    from airflow.utils.session import create_session

    if AIRFLOW_V_3_0_PLUS:
        from airflow.models.asset import AssetEvent, AssetModel

        with create_session() as session:
            rows = session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            return [e.extra for e in rows.filter(AssetModel.uri == uri)]
    from airflow.models.dataset import DatasetEvent, DatasetModel

    with create_session() as session:
        rows = session.query(DatasetEvent).join(DatasetModel, DatasetEvent.dataset_id == DatasetModel.id)
        return [e.extra for e in rows.filter(DatasetModel.uri == uri)]


def _register_dataset(uri: str) -> None:
    """Airflow 2's ``dag.test()`` does not register a DAG's datasets (its DAG processor does, for a deployed DAG),
    and events for unknown datasets are dropped: register it as the DAG processor would."""
    from airflow.models.dataset import DatasetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        if not session.query(DatasetModel).filter(DatasetModel.uri == uri).count():
            session.add(DatasetModel(uri=uri))
