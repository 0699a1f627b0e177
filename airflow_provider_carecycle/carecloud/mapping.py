"""The default mapping from CareCloud CRM customers to careCycle lead source records.

The mapping only maps; the careCycle lead validator (:class:`~airflow_provider_carecycle.leads.LeadValidator`)
decides what becomes a lead and rejects the rest with reasons (a Czech ``+420`` phone, a missing zip, ...).

>>> customer = {"customer_id": "8ea2591121e636086a4a9c0992",
...             "personal_information": {"first_name": "Mary", "phone": "12025550143",
...                                      "address": {"zip": "10001", "city": "New York"}}}
>>> customer_to_lead_source(customer)
{'externalId': '8ea2591121e636086a4a9c0992', 'firstName': 'Mary', 'phoneNumber': '+12025550143', \
'postalCode': '10001', 'city': 'New York'}

A :class:`CrmMapping` is checked once when built (field names, paths) and then maps any number of customers
without checking again; :func:`customer_to_lead_source` is the one-off form.

Override the paths with ``field_mapping`` (careCycle field -> dotted path in the CareCloud customer) and the value
conversions with ``transforms`` (careCycle field -> function), e.g.
``customer_to_lead_source(c, {**CARECLOUD_FIELD_MAPPING, "address": "personal_information.address.address1"})``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from airflow_provider_carecycle.leads import LeadValidator, ValidationResult
from airflow_provider_carecycle.leads.validation import check_field_mapping
from airflow_provider_carecycle.records import lookup_path

CARECLOUD_FIELD_MAPPING: Mapping[str, str] = MappingProxyType(
    {
        "externalId": "customer_id",
        "firstName": "personal_information.first_name",
        "lastName": "personal_information.last_name",
        "email": "personal_information.email",
        "phoneNumber": "personal_information.phone",
        "dateOfBirth": "personal_information.birthdate",
        "postalCode": "personal_information.address.zip",
        "city": "personal_information.address.city",
    }
)
"""careCycle lead field -> dotted path into a CareCloud customer. Use it through :func:`customer_to_lead_source`,
not as ``LeadValidator(field_mapping=)`` on raw customers: a raw customer's first-level ``state`` (0/1/2, the
account state) would land in careCycle's ``state`` (US state), and its phone lacks the ``+`` of its country code."""

_DIGITS_ONLY = re.compile(r"^\d+$")


def international_phone(value: Any) -> Any:
    """CareCloud's phone (digits with the international prefix, ``12025550143``) as ``+12025550143``.

    The ``+`` tells the lead validator that the number starts with its country code, so US numbers (``1`` + 10
    digits) pass and foreign ones (``420...``) are rejected as "region CZ is not allowed". Anything that is
    not plain digits (already ``+...``, empty, formatted) is returned unchanged for the validator to judge.

    :param value: the CareCloud phone value.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and _DIGITS_ONLY.match(value.strip()):
        return "+" + value.strip()
    return value


#: careCycle lead field -> conversion applied to the mapped CareCloud value
DEFAULT_TRANSFORMS: Mapping[str, Callable[[Any], Any]] = MappingProxyType({"phoneNumber": international_phone})


class CrmMapping:
    """A CareCloud-customer-to-lead-source mapping, checked once when built, then applied to any number of customers.

    Build it once per run (the transfer operator does, before its first CRM request) and call it per customer: the
    field names and paths are not checked again for each row.

    :param field_mapping: careCycle field -> dotted path into a CareCloud customer.
    :param transforms: careCycle field -> conversion of the mapped value.
    :param argument: the argument's name in error messages (``field_mapping`` in the operator).
    :raises ValueError: naming the argument and the bad key: a key that is not a careCycle lead field, a path that
        is not non-empty dotted text, a transform that is not callable.
    """

    def __init__(
        self,
        field_mapping: Mapping[str, str] = CARECLOUD_FIELD_MAPPING,
        transforms: Mapping[str, Callable[[Any], Any]] = DEFAULT_TRANSFORMS,
        *,
        argument: str = "field_mapping",
    ) -> None:
        check_field_mapping(field_mapping, argument)
        for field, transform in transforms.items():
            if not callable(transform):
                raise ValueError(f"transforms[{field!r}]: must be a function, got a {type(transform).__name__}.")
        #: ``(careCycle field, path, transform or None)``, in the mapping's order
        self._fields = tuple((field, path, transforms.get(field)) for field, path in field_mapping.items())

    def __call__(self, customer: Mapping[str, Any]) -> dict[str, Any]:
        """One CareCloud customer as a careCycle lead source record (careCycle field names; missing values left out).

        :param customer: a customer as ``GET /customers`` returns it.
        """
        source: dict[str, Any] = {}
        for field, path, transform in self._fields:
            value = lookup_path(customer, path)
            if transform is not None and value is not None:
                value = transform(value)
            if value is not None and value != "":
                source[field] = value
        return source


DEFAULT_CRM_MAPPING = CrmMapping()
"""The default mapping, checked once at import: :data:`CARECLOUD_FIELD_MAPPING` with :data:`DEFAULT_TRANSFORMS`."""


def customer_to_lead_source(
    customer: Mapping[str, Any],
    field_mapping: Mapping[str, str] = CARECLOUD_FIELD_MAPPING,
    transforms: Mapping[str, Callable[[Any], Any]] = DEFAULT_TRANSFORMS,
) -> dict[str, Any]:
    """One CareCloud customer as a careCycle lead source record (careCycle field names; missing values left out).

    A one-off: it checks a mapping other than the default on each call. To map many customers, build a
    :class:`CrmMapping` once and call it.

    :param customer: a customer as ``GET /customers`` returns it.
    :param field_mapping: careCycle field -> dotted path into the customer.
    :param transforms: careCycle field -> conversion of the mapped value.
    :raises ValueError: when ``field_mapping`` names a field careCycle does not have, or holds a bad path.
    """
    return _mapping(field_mapping, transforms)(customer)


def _mapping(field_mapping: Mapping[str, str], transforms: Mapping[str, Callable[[Any], Any]]) -> CrmMapping:
    if field_mapping is CARECLOUD_FIELD_MAPPING and transforms is DEFAULT_TRANSFORMS:
        return DEFAULT_CRM_MAPPING
    return CrmMapping(field_mapping, transforms)


def validate_customer(
    customer: Mapping[str, Any],
    validator: LeadValidator | None = None,
    field_mapping: Mapping[str, str] = CARECLOUD_FIELD_MAPPING,
    transforms: Mapping[str, Callable[[Any], Any]] = DEFAULT_TRANSFORMS,
) -> ValidationResult:
    """Map one CareCloud customer and run it through the careCycle lead validator.

    :param customer: a customer as ``GET /customers`` returns it.
    :param validator: the validator (give one with ``defaults=``, e.g. a ``timezone`` or ``sourceId``); default
        a plain :class:`LeadValidator`.
    :param field_mapping: careCycle field -> dotted path into the customer.
    :param transforms: careCycle field -> conversion of the mapped value.
    :return: the lead, or its rejections (field, PHI-free reason, code).
    """
    return (validator or LeadValidator()).validate(customer_to_lead_source(customer, field_mapping, transforms))


__all__ = [
    "CARECLOUD_FIELD_MAPPING",
    "DEFAULT_CRM_MAPPING",
    "DEFAULT_TRANSFORMS",
    "CrmMapping",
    "customer_to_lead_source",
    "international_phone",
    "validate_customer",
]
