"""The connection forms of the provider's two connection types, described once.

Everything Airflow shows for a careCycle or CareCloud CRM connection lives here: the hidden and relabelled standard
fields, the placeholders, and the extras (``conn-fields``) with their labels, types, bounds and defaults. The other
places are views of it:

* ``get_provider_info()["connection-types"]`` (Airflow 3.2+ reads the form from it) is
  :meth:`ConnectionForm.provider_info`;
* each hook's ``get_ui_field_behaviour()`` (Airflow 2.x-3.1) is :meth:`ConnectionForm.ui_field_behaviour`;
* the hooks read their extras through :attr:`ConnectionForm.extras`, so a form default is the hook's default.

Importing this module imports nothing from Airflow or ``requests``: operators and ``get_provider_info`` may use it at
DAG-parse time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_PKG = "airflow_provider_carecycle"
_JSON_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number"}

#: Default of the ``max_retry_after`` extra: the longest ``retryAfter`` a worker sleeps through, in seconds.
DEFAULT_MAX_RETRY_AFTER_S = 300
CARECYCLE_DEFAULT_CONN_ID = "carecycle_default"
CARECLOUD_CRM_DEFAULT_CONN_ID = "carecloud_crm_default"
CARECYCLE_DEFAULT_BASE_URL = "https://api.carecycle.ai"


@dataclass(frozen=True)
class ExtraField:
    """One connection extra the hook reads, as the form shows it.

    :param name: the key in the connection's extra JSON.
    :param label: the form's label.
    :param description: the form's help text.
    :param kind: ``str``, ``int`` or ``float``: what the hook casts the value to (forms may store text).
    :param default: the value when the extra is absent or empty (``None``: none).
    :param minimum: the smallest value the form accepts, for numbers.
    :param example: the value shown for it in the extra field's placeholder (``None``: not shown).
    """

    name: str
    label: str
    description: str
    kind: type = str
    default: Any = None
    minimum: float | None = None
    example: Any = None

    def conn_field(self) -> dict[str, Any]:
        """The ``conn-fields`` entry of provider info: label, description and a JSON schema."""
        schema: dict[str, Any] = {"type": [_JSON_TYPES[self.kind], "null"]}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.default is not None:
            schema["default"] = self.default
        return {"label": self.label, "description": self.description, "schema": schema}


def transport_fields(*, requests_per_minute: int, in_placeholder: bool) -> tuple[ExtraField, ...]:
    """The extras every HTTP hook of this provider reads: timeout, retries, client-side rate limit and the longest
    ``Retry-After`` slept through.

    :param requests_per_minute: the vendor's default client-side limit.
    :param in_placeholder: whether the extra field's placeholder shows them (with their defaults).
    """
    fields: tuple[ExtraField, ...] = (
        ExtraField("timeout", "Timeout (seconds)", "Seconds to wait for each API answer.", float, 30, 1),
        ExtraField(
            "max_retries",
            "Max retries",
            "Retries of a request after a 429, a 5xx or a dropped connection.",
            int,
            5,
            0,
        ),
        ExtraField(
            "requests_per_minute",
            "Requests per minute",
            # Each task instance is its own process: the limit is shared through the host-wide state file (or Redis),
            # not by "every task in one worker process".
            "Client-side rate limit, shared by the host's task processes (every host, with Redis).",
            int,
            requests_per_minute,
            1,
        ),
        ExtraField(
            "max_retry_after",
            "Max retry-after (seconds)",
            "Longest wait a 429 may ask for that the worker sleeps through; a longer one fails the attempt at once "
            "and Airflow's task retries take over.",
            float,
            DEFAULT_MAX_RETRY_AFTER_S,
            0,
        ),
        ExtraField(
            "rate_limit_backend",
            "Rate limit backend",
            "Empty: the limit is shared by every process of the host (adaptive across hosts). "
            "A redis:// URL: shared exactly by every host through that Redis server. "
            "'process': one process only; for tests and single-task deployments.",
        ),
        ExtraField(
            "rate_limit_dir",
            "Rate limit folder",
            "Folder of the host-wide limit's state (default: a private folder in the temp dir).",
        ),
    )
    if not in_placeholder:
        return fields
    return tuple(
        ExtraField(f.name, f.label, f.description, f.kind, f.default, f.minimum, example=f.default) for f in fields
    )


@dataclass(frozen=True)
class ConnectionForm:
    """One connection type's form.

    :param conn_type: Airflow's connection type.
    :param hook_name: the name the form shows.
    :param hook_class: the hook's dotted path.
    :param hidden_fields: standard fields the form hides.
    :param relabeling: standard field -> label.
    :param placeholders: standard field -> placeholder (the extra field's comes from the extras' examples).
    :param fields: the extras.
    :param legacy_conn_types: older names of the connection type, still read (with a deprecation warning naming
        ``conn_type``) but no longer registered with Airflow.
    """

    conn_type: str
    hook_name: str
    hook_class: str
    hidden_fields: tuple[str, ...]
    relabeling: Mapping[str, str]
    placeholders: Mapping[str, str]
    fields: tuple[ExtraField, ...] = field(default=())
    legacy_conn_types: tuple[str, ...] = ()

    @property
    def extras(self) -> dict[str, ExtraField]:
        """The extras by name, in form order."""
        return {f.name: f for f in self.fields}

    def _behaviour(self) -> dict[str, Any]:
        examples = {f.name: f.example for f in self.fields if f.example is not None}
        placeholders = {**self.placeholders, **({"extra": json.dumps(examples)} if examples else {})}
        return {
            "hidden_fields": list(self.hidden_fields),
            "relabeling": dict(self.relabeling),
            "placeholders": placeholders,
        }

    def ui_field_behaviour(self) -> dict[str, Any]:
        """What the hook's ``get_ui_field_behaviour()`` returns (snake_case keys)."""
        return self._behaviour()

    def provider_info(self) -> dict[str, Any]:
        """The ``connection-types`` entry of provider info (kebab-case keys, ``conn-fields``)."""
        return {
            "connection-type": self.conn_type,
            "hook-class-name": self.hook_class,
            "hook-name": self.hook_name,
            "ui-field-behaviour": {key.replace("_", "-"): value for key, value in self._behaviour().items()},
            "conn-fields": {f.name: f.conn_field() for f in self.fields},
        }


CARECYCLE_FORM = ConnectionForm(
    conn_type="carecycle",
    hook_name="careCycle",
    hook_class=f"{_PKG}.hooks.carecycle.CareCycleHook",
    hidden_fields=("schema", "login", "port"),
    relabeling={"host": "Base URL", "password": "API key"},
    placeholders={"host": CARECYCLE_DEFAULT_BASE_URL, "password": "cc_..."},
    fields=(
        *transport_fields(requests_per_minute=60, in_placeholder=True),
        # read by the extra link (links.py), not by the hook
        ExtraField(
            "app_url",
            "Web app URL",
            "careCycle's web app, for the task's 'careCycle campaign' link.",
            default="https://app.carecycle.ai",
        ),
    ),
)

CARECLOUD_CRM_FORM = ConnectionForm(
    # a valid URI scheme (carecloud://...): Airflow warns about a "_" in a connection type
    conn_type="carecloud",
    hook_name="CareCloud CRM",
    hook_class=f"{_PKG}.carecloud.hook.CareCloudCrmHook",
    hidden_fields=("schema", "port"),
    relabeling={"host": "Project domain or base URL", "login": "API user login", "password": "Password"},
    placeholders={"host": "myproject.crmcarecloud.com", "login": "airflow-api"},
    fields=(
        ExtraField(
            "user_external_application_id",
            "External application id",
            "The user's external application id, sent with every login.",
            example="...",
        ),
        ExtraField("interface", "Interface", "REST API interface.", default="enterprise-interface"),
        ExtraField("version", "API version", "REST API version.", default="v1.0"),
        ExtraField("accept_language", "Accept-Language", "Language of translated texts in answers, e.g. en."),
        ExtraField(
            "project_timezone",
            "Project time zone",
            "IANA time zone of the project (how last_change and token expiry are written).",
            default="UTC",
            example="Europe/Prague",
        ),
        *transport_fields(requests_per_minute=300, in_placeholder=False),
    ),
    legacy_conn_types=("carecloud_crm",),
)

#: Every connection type of the provider, in provider-info order.
CONNECTION_FORMS: tuple[ConnectionForm, ...] = (CARECYCLE_FORM, CARECLOUD_CRM_FORM)
