"""The transport's base error and the two vendors' families: siblings, so one vendor's ``except`` never swallows the
other's failure; both under :class:`ApiError`. Real HTTP against both emulators."""

from __future__ import annotations

import json

import pytest

from airflow_provider_carecycle._compat import AirflowFailException
from airflow_provider_carecycle.carecloud.exceptions import (
    CARECLOUD_ERRORS,
    CareCloudAPIError,
    CareCloudAuthError,
    CareCloudValidationError,
)
from airflow_provider_carecycle.carecloud.hook import CareCloudCrmHook
from airflow_provider_carecycle.exceptions import (
    CARECYCLE_ERRORS,
    ApiError,
    CareCycleAPIError,
    CareCycleAuthError,
    CareCycleValidationError,
)
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
from carecycle_emulator import carecloud_connection_json


def crm_login_failure(carecloud_emulator, monkeypatch) -> BaseException:
    conn = json.loads(carecloud_connection_json(carecloud_emulator))
    conn["password"] = "wrong-secret"
    monkeypatch.setenv("AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT", json.dumps(conn))
    with pytest.raises(ApiError) as err:
        list(CareCloudCrmHook().iter_customers())
    return err.value


def carecycle_key_failure(carecycle_emulator, carecycle_connection) -> BaseException:
    carecycle_connection("bad_key", host=carecycle_emulator.url, password="cc_not_a_real_key")
    with pytest.raises(ApiError) as err:
        list(CareCycleHook("bad_key").iter_customers())
    return err.value


def test_catching_carecycle_auth_errors_does_not_catch_a_crm_login_failure(carecloud_emulator, monkeypatch):
    error = crm_login_failure(carecloud_emulator, monkeypatch)
    assert isinstance(error, CareCloudAuthError) and error.status == 401
    assert not isinstance(error, CareCycleAuthError)
    assert not isinstance(error, CareCycleAPIError)
    assert isinstance(error, AirflowFailException)  # still fails the task at once


def test_catching_crm_auth_errors_does_not_catch_a_carecycle_key_failure(carecycle_emulator, carecycle_connection):
    error = carecycle_key_failure(carecycle_emulator, carecycle_connection)
    assert isinstance(error, CareCycleAuthError) and error.status == 401
    assert not isinstance(error, CareCloudAuthError)
    assert not isinstance(error, CareCloudAPIError)
    assert isinstance(error, AirflowFailException)


@pytest.mark.parametrize("family", [CARECYCLE_ERRORS, CARECLOUD_ERRORS], ids=["carecycle", "carecloud"])
def test_each_family_is_whole_and_apart_from_the_other(family):
    other = CARECLOUD_ERRORS if family is CARECYCLE_ERRORS else CARECYCLE_ERRORS
    kinds = ("auth", "not_found", "validation", "rate_limit", "retry_after_too_long", "server", "malformed")
    for kind in kinds:
        cls = getattr(family, kind)
        assert issubclass(cls, family.base) and issubclass(cls, ApiError)
        assert not issubclass(cls, other.base), f"{cls.__name__} is also a {other.base.__name__}"
    retryable = {kind for kind in kinds if getattr(family, kind)("x").retryable}
    assert retryable == {"rate_limit", "retry_after_too_long", "server", "malformed"}
    assert issubclass(family.auth, AirflowFailException)
    assert issubclass(family.retry_after_too_long, family.rate_limit)


def test_the_message_is_built_once_with_its_details():
    crm = CareCloudValidationError(
        "CareCloud API GET /customers: request rejected (400 Bad Request).",
        status=400,
        invalid_params=[{"name": "birthdate", "reason": "invalid_value_format"}],
    )
    assert crm.message.endswith("Invalid parameters: birthdate: invalid_value_format")
    assert crm.args == (crm.message,) and str(crm) == crm.message
    carecycle = CareCycleValidationError(
        "careCycle API POST /v2/leads/upload: request rejected (400 VALIDATION_ERROR).",
        errors=[{"path": ["records", 3, "dateOfBirth"], "code": "invalid_string", "received": "1950-13-45"}],
    )
    assert carecycle.message.endswith("Field errors: records.3.dateOfBirth: invalid_string")
    assert carecycle.args == (carecycle.message,) and "1950-13-45" not in carecycle.message
    assert CareCycleValidationError("no field errors").message == "no field errors"


def test_a_crm_validation_answer_names_its_parameters_once(carecloud_emulator):
    with pytest.raises(CareCloudValidationError) as err:
        list(CareCloudCrmHook().iter_customers(extra_params={"birthdate": "not-a-date"}))
    assert str(err.value).count("Invalid parameters: birthdate: invalid_value_format") == 1
    assert err.value.args == (err.value.message,)
