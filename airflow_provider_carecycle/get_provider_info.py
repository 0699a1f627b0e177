"""Provider metadata for Airflow's ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_carecycle import __version__
from airflow_provider_carecycle.connection_forms import CONNECTION_FORMS

_PKG = "airflow_provider_carecycle"


#: ``carecycle://<host>/<name>`` assets, normalised by :func:`airflow_provider_carecycle.assets.normalize_carecycle_uri`
_CARECYCLE_URIS = {"schemes": ["carecycle"], "handler": f"{_PKG}.assets.normalize_carecycle_uri"}


def get_provider_info() -> dict[str, Any]:
    """What ``airflow providers list`` shows and where Airflow 3.2+ reads the connection form from.

    The connection types are views of :mod:`~airflow_provider_carecycle.connection_forms`, as are the hooks'
    ``get_ui_field_behaviour()`` (read by Airflow 2.x-3.1) and the extras they read. Importing this module imports
    nothing from Airflow.
    """
    return {
        "package-name": "airflow-provider-carecycle",
        "name": "careCycle",
        "description": "careCycle (AI outbound calling CRM for Medicare/ACA agencies): leads, customers, campaigns.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "careCycle",
                "external-doc-url": "https://docs.carecycle.ai",
                # each operator's, sensor's and transfer's page, in docs/ of the repository and the sdist
                "how-to-guide": [
                    "docs/operators/upload-leads.md",
                    "docs/operators/sync.md",
                    "docs/operators/extract-customers.md",
                    "docs/operators/campaigns.md",
                    "docs/operators/sql-to-carecycle.md",
                    "docs/operators/consent.md",
                ],
                "tags": ["service"],
            },
            {
                "integration-name": "CareCloud CRM",
                "external-doc-url": "https://www.crmcarecloud.com",
                "how-to-guide": ["docs/operators/carecloud-to-carecycle.md", "docs/operators/consent.md"],
                "tags": ["service"],
            },
        ],
        "hooks": [
            {"integration-name": "careCycle", "python-modules": [f"{_PKG}.hooks.carecycle"]},
            {"integration-name": "CareCloud CRM", "python-modules": [f"{_PKG}.carecloud.hook"]},
        ],
        "operators": [
            {
                "integration-name": "careCycle",
                "python-modules": [
                    f"{_PKG}.operators.leads",
                    f"{_PKG}.operators.customers",
                    f"{_PKG}.operators.campaigns",
                ],
            }
        ],
        "sensors": [{"integration-name": "careCycle", "python-modules": [f"{_PKG}.sensors.campaigns"]}],
        "triggers": [{"integration-name": "careCycle", "python-modules": [f"{_PKG}.triggers.campaigns"]}],
        "transfers": [
            {
                "source-integration-name": "Common SQL",
                "target-integration-name": "careCycle",
                "python-module": f"{_PKG}.transfers.sql",
            },
            {
                "source-integration-name": "CareCloud CRM",
                "target-integration-name": "careCycle",
                "python-module": f"{_PKG}.transfers.carecloud",
            },
            {
                "source-integration-name": "careCycle",
                "target-integration-name": "CareCloud CRM",
                "python-module": f"{_PKG}.transfers.carecloud_consent",
            },
        ],
        # the carecycle:// asset scheme (Airflow 3 reads asset-uris, 2.10/2.11 dataset-uris) and the
        # "careCycle campaign" extra link
        "asset-uris": [_CARECYCLE_URIS],
        "dataset-uris": [_CARECYCLE_URIS],
        "extra-links": [f"{_PKG}.links.CareCycleCampaignLink"],
        "connection-types": [form.provider_info() for form in CONNECTION_FORMS],
    }
