"""Provider metadata for Airflow's ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_carecycle import __version__

_PKG = "airflow_provider_carecycle"


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
            }
        ],
        "hooks": [{"integration-name": "careCycle", "python-modules": [f"{_PKG}.hooks.carecycle"]}],
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
                        "extra": '{"timeout": 30, "max_retries": 5, "requests_per_minute": 60}',
                    },
                },
                "conn-fields": {
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
                        "description": "Client-side rate limit shared by every task in one worker process.",
                        "schema": {"type": ["integer", "null"], "minimum": 1, "default": 60},
                    },
                },
            }
        ],
    }
