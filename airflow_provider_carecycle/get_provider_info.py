"""Provider metadata for Airflow's ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_carecycle import __version__

_PKG = "airflow_provider_carecycle"


def _transport_fields(*, requests_per_minute: int) -> dict[str, Any]:
    """The ``conn-fields`` every HTTP hook of this provider reads: timeout, retries, client-side rate limit, the
    longest ``Retry-After`` slept through, and where the limit is shared."""
    return {
        "timeout": {
            "label": "Timeout (seconds)",
            "description": "Seconds to wait for each API answer.",
            "schema": {"type": ["number", "null"], "minimum": 1, "default": 30},
        },
        "max_retries": {
            "label": "Max retries",
            "description": "Retries of a request after a 429, a 5xx or a dropped connection.",
            "schema": {"type": ["integer", "null"], "minimum": 0, "default": 5},
        },
        "requests_per_minute": {
            "label": "Requests per minute",
            "description": "Client-side rate limit, shared by the host's task processes (every host, with Redis).",
            "schema": {"type": ["integer", "null"], "minimum": 1, "default": requests_per_minute},
        },
        "max_retry_after": {
            "label": "Max retry-after (seconds)",
            "description": "Longest wait a 429 may ask for that the worker sleeps through; a longer one fails the "
            "attempt at once and Airflow's task retries take over.",
            "schema": {"type": ["number", "null"], "minimum": 0, "default": 300},
        },
        "rate_limit_backend": {
            "label": "Rate limit backend",
            "description": "Empty: the limit is shared by every process of the host (adaptive across hosts). "
            "A redis:// URL: shared exactly by every host through that Redis server.",
            "schema": {"type": ["string", "null"]},
        },
        "rate_limit_dir": {
            "label": "Rate limit folder",
            "description": "Folder of the host-wide limit's state (default: a private folder in the temp dir).",
            "schema": {"type": ["string", "null"]},
        },
    }


def _link_fields() -> dict[str, Any]:
    """The careCycle ``conn-fields`` the extra link reads (not the hook): the web app's base URL."""
    return {
        "app_url": {
            "label": "Web app URL",
            "description": "careCycle's web app, for the task's 'careCycle campaign' link.",
            "schema": {"type": ["string", "null"], "default": "https://app.carecycle.ai"},
        },
    }


#: ``carecycle://<host>/<name>`` assets, normalised by :func:`airflow_provider_carecycle.assets.normalize_carecycle_uri`
_CARECYCLE_URIS = {"schemes": ["carecycle"], "handler": f"{_PKG}.assets.normalize_carecycle_uri"}


def get_provider_info() -> dict[str, Any]:
    """What ``airflow providers list`` shows and where Airflow 3.2+ reads the connection form from.

    The ``ui-field-behaviour`` here and ``CareCycleHook.get_ui_field_behaviour()`` (read by Airflow 2.x-3.1) say
    the same thing; a test keeps them in step. Importing this module imports nothing from Airflow.
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
                "tags": ["service"],
            },
            {
                "integration-name": "CareCloud CRM",
                "external-doc-url": "https://www.crmcarecloud.com",
                "tags": ["service"],
            },
        ],
        "hooks": [
            {"integration-name": "careCycle", "python-modules": [f"{_PKG}.hooks.carecycle"]},
            {"integration-name": "CareCloud CRM", "python-modules": [f"{_PKG}.hooks.carecloud"]},
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
        ],
        # issue 14: the carecycle:// asset scheme (Airflow 3 reads asset-uris, 2.10/2.11 dataset-uris) and the
        # "careCycle campaign" extra link
        "asset-uris": [_CARECYCLE_URIS],
        "dataset-uris": [_CARECYCLE_URIS],
        "extra-links": [f"{_PKG}.links.CareCycleCampaignLink"],
        "connection-types": [
            {
                "connection-type": "carecycle",
                "hook-class-name": f"{_PKG}.hooks.carecycle.CareCycleHook",
                "hook-name": "careCycle",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port"],
                    "relabeling": {"host": "Base URL", "password": "API key"},
                    "placeholders": {
                        "host": "https://api.carecycle.ai",
                        "password": "cc_...",
                        "extra": '{"timeout": 30, "max_retries": 5, "requests_per_minute": 60, "max_retry_after": 300}',
                    },
                },
                "conn-fields": {
                    **_transport_fields(requests_per_minute=60),
                    **_link_fields(),
                },
            },
            {
                "connection-type": "carecloud_crm",
                "hook-class-name": f"{_PKG}.hooks.carecloud.CareCloudCrmHook",
                "hook-name": "CareCloud CRM",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "host": "Project domain or base URL",
                        "login": "API user login",
                        "password": "Password",
                    },
                    "placeholders": {
                        "host": "myproject.crmcarecloud.com",
                        "login": "airflow-api",
                        "extra": '{"user_external_application_id": "...", "project_timezone": "Europe/Prague"}',
                    },
                },
                "conn-fields": {
                    "user_external_application_id": {
                        "label": "External application id",
                        "description": "The user's external application id, sent with every login.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "interface": {
                        "label": "Interface",
                        "description": "REST API interface.",
                        "schema": {"type": ["string", "null"], "default": "enterprise-interface"},
                    },
                    "version": {
                        "label": "API version",
                        "description": "REST API version.",
                        "schema": {"type": ["string", "null"], "default": "v1.0"},
                    },
                    "accept_language": {
                        "label": "Accept-Language",
                        "description": "Language of translated texts in answers, e.g. en.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "project_timezone": {
                        "label": "Project time zone",
                        "description": "IANA time zone of the project (how last_change and token expiry are written).",
                        "schema": {"type": ["string", "null"], "default": "UTC"},
                    },
                    **_transport_fields(requests_per_minute=300),
                },
            },
        ],
    }
