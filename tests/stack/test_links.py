"""The "careCycle campaign" extra link: its URL, the ``app_url`` extra, and how Airflow finds it.

Airflow reading the stored link back for a finished run (the webserver's way on Airflow 2, the API server's on
Airflow 3) is checked in ``tests/test_stack_in_airflow.py``.
"""

from __future__ import annotations

import pytest

from airflow_provider_carecycle.get_provider_info import get_provider_info
from airflow_provider_carecycle.links import DEFAULT_APP_URL, CareCycleCampaignLink, app_url, campaign_url
from airflow_provider_carecycle.operators.campaigns import CareCycleCampaignSnapshotOperator
from airflow_provider_carecycle.sensors.campaigns import CareCycleCampaignStatsSensor

CAMPAIGN = "5e11c37e-847e-42a1-88f2-2ca8f585262d"


def test_one_campaign_links_to_its_page_several_to_the_list():
    assert campaign_url("https://app.example", [CAMPAIGN]) == f"https://app.example/campaigns/{CAMPAIGN}"
    assert campaign_url("https://app.example", [CAMPAIGN, CAMPAIGN[::-1]]) == "https://app.example/campaigns"
    assert campaign_url("https://app.example", []) == "https://app.example/campaigns"
    assert campaign_url("https://app.example", ["../admin?x=1"]) == "https://app.example/campaigns"


def test_app_url_comes_from_the_connection_extra_else_the_default(carecycle_connection):
    carecycle_connection("plain")
    carecycle_connection("custom", extra={"app_url": "https://crm.agency.example/carecycle/"})
    carecycle_connection("broken", extra={"app_url": "javascript:alert(1)"})

    assert app_url("plain") == DEFAULT_APP_URL
    assert app_url("custom") == "https://crm.agency.example/carecycle"
    with pytest.raises(ValueError, match="'broken': extra 'app_url' must be an http"):
        app_url("broken")


class FakeTI:
    """The one thing ``persist`` uses of a task instance: ``xcom_push``."""

    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


def test_persist_stores_this_tries_url_under_the_links_xcom_key(carecycle_connection):
    carecycle_connection("carecycle_default", extra={"app_url": "https://app.example"})
    ti = FakeTI()

    url = CareCycleCampaignLink.persist({"ti": ti}, "carecycle_default", [CAMPAIGN])

    assert ti.pushed == {CareCycleCampaignLink().xcom_key: url} == {"carecycle_campaign_url": url}
    assert url == f"https://app.example/campaigns/{CAMPAIGN}"


def test_a_broken_app_url_costs_the_link_not_the_task(carecycle_connection):
    carecycle_connection("carecycle_default", extra={"app_url": "ftp://x"})
    ti = FakeTI()
    assert CareCycleCampaignLink.persist({"ti": ti}, "carecycle_default", [CAMPAIGN]) is None
    assert ti.pushed == {}


def test_the_link_is_on_the_snapshot_and_the_sensor_and_registered():
    for operator in (CareCycleCampaignSnapshotOperator, CareCycleCampaignStatsSensor):
        assert [link.name for link in operator.operator_extra_links] == ["careCycle campaign"]
    assert get_provider_info()["extra-links"] == ["airflow_provider_carecycle.links.CareCycleCampaignLink"]
    assert get_provider_info()["connection-types"][0]["conn-fields"]["app_url"]["schema"]["default"] == DEFAULT_APP_URL
