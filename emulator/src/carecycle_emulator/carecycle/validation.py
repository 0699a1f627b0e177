"""Server-side validation of the careCycle emulator: query parameters and lead records (zod-style issues).

Written independently of the provider's client-side validation on purpose: the emulator is the test oracle.
An issue is ``{"path": [...], "message", "expected", "received", "code"}``.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from carecycle_emulator.carecycle.vocabulary import (
    GENDERS,
    MARITAL_STATUSES,
    MAX_CUSTOM_FIELDS,
    MAX_RECORDS_PER_UPLOAD,
    TIMEZONE_ABBREVIATIONS,
)

UUID_RE = re.compile(
    r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}"
    r"|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)$"
)
DATE_PARAM_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?)?Z?$")
PHONE_RES = (re.compile(r"^\+1\d{10}$"), re.compile(r"^\d{10}$"), re.compile(r"^\(\d{3}\) \d{3}-\d{4}$"))
DOB_RE = re.compile(r"^(0[1-9]|1[0-2])[-/](0[1-9]|[12]\d|3[01])[-/]\d{4}$")
IANA_RE = re.compile(
    r"^(Africa|America|Antarctica|Arctic|Asia|Atlantic|Australia|Europe|Indian|Pacific|Etc)/[A-Za-z0-9_+\-]+"
    r"(/[A-Za-z0-9_+\-]+)?$|^UTC$"
)
INT32 = (-(2**31), 2**31 - 1)


# Lead record schema: field -> (kind, limit). Kinds: str (max length), str5 (exact length 5), enum (choices),
# int32, bool, number, special handling for phoneNumber, timezone, dateOfBirth, customFields.
LEAD_FIELDS: dict[str, tuple[str, Any]] = {
    "phoneNumber": ("phone", None),
    "firstName": ("str", 255),
    "lastName": ("str", 255),
    "email": ("str", 255),
    "postalCode": ("str5", 5),
    "timezone": ("timezone", None),
    "state": ("str", 50),
    "city": ("str", 255),
    "county": ("str", 255),
    "address": ("str", 255),
    "address2": ("str", 255),
    "dateOfBirth": ("dob", None),
    "language": ("str", 50),
    "gender": ("enum", GENDERS),
    "maritalStatus": ("enum", MARITAL_STATUSES),
    "filingStatus": ("str", 50),
    "dependentCount": ("int32", None),
    "householdIncome": ("int32", None),
    "isDecisionMaker": ("bool", None),
    "medicaid": ("bool", None),
    "medicaidNumber": ("str", 255),
    "veteran": ("bool", None),
    "vaNumber": ("str", 255),
    "socialSecurityDisability": ("bool", None),
    "carrierAssignedCustomerId": ("str", 255),
    "healthSherpaCustomerId": ("str", 255),
    "mbiNumber": ("str", 255),
    "doNotCall": ("bool", None),
    "doNotSMS": ("bool", None),
    "doNotEmail": ("bool", None),
    "doNotMail": ("bool", None),
    "externalId": ("str", 255),
    "sourceId": ("str", 255),
    "leadCost": ("number", None),
    "customFields": ("custom", MAX_CUSTOM_FIELDS),
}


def issue(path: list[Any], message: str, expected: str, received: str, code: str) -> dict[str, Any]:
    return {"path": path, "message": message, "expected": expected, "received": received, "code": code}


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# -- query parameters ------------------------------------------------------------------------------------------


class QueryErrors:
    """Collects issues while parsing query parameters."""

    def __init__(self) -> None:
        self.issues: list[dict[str, Any]] = []

    def add(self, name: str, message: str, expected: str, received: str, code: str) -> None:
        self.issues.append(issue([name], message, expected, received, code))

    def positive_int(self, query: dict[str, str], name: str, default: int, maximum: int | None = None) -> int:
        raw = query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            try:
                as_float = float(raw)
            except ValueError:
                self.add(name, "Expected number, received nan", "number", "nan", "invalid_type")
                return default
            self.add(name, "Expected integer, received float", "integer", str(as_float), "invalid_type")
            return default
        if value < 1:
            self.add(name, "Number must be greater than or equal to 1", ">=1", str(value), "too_small")
            return default
        if maximum is not None and value > maximum:
            self.add(name, f"Number must be less than or equal to {maximum}", f"<={maximum}", str(value), "too_big")
            return default
        return value

    def enum(self, query: dict[str, str], name: str, choices: tuple[str, ...], default: str | None) -> str | None:
        raw = query.get(name)
        if raw is None or raw == "":
            return default
        if raw not in choices:
            self._bad_enum(name, raw, choices)
            return default
        return raw

    def enum_list(self, query: dict[str, str], name: str, choices: tuple[str, ...]) -> list[str]:
        values = split_list(query.get(name))
        bad = [v for v in values if v not in choices]
        for value in bad:
            self._bad_enum(name, value, choices)
        return [v for v in values if v in choices]

    def _bad_enum(self, name: str, value: str, choices: tuple[str, ...]) -> None:
        expected = " | ".join(f"'{c}'" for c in choices)
        self.add(
            name, f"Invalid enum value. Expected {expected}, received '{value}'", expected, value, "invalid_enum_value"
        )

    def boolean(self, query: dict[str, str], name: str) -> bool | None:
        raw = query.get(name)
        if raw is None or raw == "":
            return None
        low = raw.lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        self.add(name, "Expected boolean, received string", "boolean", raw, "invalid_type")
        return None

    def date_bound(self, query: dict[str, str], name: str, end: bool) -> str | None:
        """A date filter as an ISO timestamp bound; date-only end bounds cover the whole day."""
        raw = query.get(name)
        if raw is None or raw == "":
            return None
        if not DATE_PARAM_RE.match(raw):
            self.add(name, "Invalid", "YYYY-MM-DD", raw, "invalid_string")
            return None
        try:
            day = date.fromisoformat(raw[:10])
            if len(raw) > 10:
                datetime.fromisoformat(raw.rstrip("Z"))
        except ValueError:
            self.add(name, "Invalid date", "YYYY-MM-DD", raw, "invalid_date")
            return None
        if len(raw) == 10:
            return f"{day.isoformat()}T23:59:59.999Z" if end else f"{day.isoformat()}T00:00:00.000Z"
        text = raw.rstrip("Z")
        if "." not in text:
            text += ".000"
        return text[:23] + "Z"


def split_list(raw: str | None) -> list[str]:
    if raw is None:
        return []
    return [part.strip() for part in raw.split(",") if part.strip()]


# -- lead records ----------------------------------------------------------------------------------------------


def phone_digits(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    return digits[-10:]


def _valid_timezone(value: str) -> bool:
    if value in TIMEZONE_ABBREVIATIONS:
        return True
    if not IANA_RE.match(value):
        return False
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(value)
    except (ImportError, ValueError, OSError):
        return False
    except Exception:  # zoneinfo.ZoneInfoNotFoundError, or no tz database on this machine
        try:
            import zoneinfo

            return not zoneinfo.available_timezones()
        except Exception:
            return True
    return True


def validate_upload_body(body: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Validate a ``POST /v2/leads/upload`` body.

    Returns ``(records, issues, failed_records)``; the request is valid when ``issues`` is empty.
    """
    if not isinstance(body, dict):
        return (
            [],
            [issue([], f"Expected object, received {type_name(body)}", "object", type_name(body), "invalid_type")],
            [],
        )
    issues: list[dict[str, Any]] = []
    unknown = sorted(set(body) - {"records"})
    for key in unknown:
        issues.append(issue([key], f"Unrecognized key(s) in object: '{key}'", "never", key, "unrecognized_keys"))
    records = body.get("records")
    if not isinstance(records, list):
        received = "undefined" if "records" not in body else type_name(records)
        issues.append(issue(["records"], f"Expected array, received {received}", "array", received, "invalid_type"))
        return [], issues, []
    if len(records) < 1:
        issues.append(
            issue(["records"], "Array must contain at least 1 element(s)", ">=1 items", "0 items", "too_small")
        )
    if len(records) > MAX_RECORDS_PER_UPLOAD:
        issues.append(
            issue(
                ["records"],
                f"Array must contain at most {MAX_RECORDS_PER_UPLOAD} element(s)",
                f"<={MAX_RECORDS_PER_UPLOAD} items",
                f"{len(records)} items",
                "too_big",
            )
        )
        return records, issues, []
    failed: list[dict[str, Any]] = []
    for index, record in enumerate(records):
        record_issues = validate_record(record, index)
        if record_issues:
            issues.extend(record_issues)
            rec = record if isinstance(record, dict) else {}

            def text(key: str, rec: dict[str, Any] = rec) -> Any:
                value = rec.get(key)
                return value if isinstance(value, str) else None

            failed.append(
                {
                    "index": index,
                    "phoneNumber": text("phoneNumber"),
                    "firstName": text("firstName"),
                    "lastName": text("lastName"),
                    "externalId": text("externalId"),
                }
            )
    return records, issues, failed


def validate_record(record: Any, index: int) -> list[dict[str, Any]]:
    base: list[Any] = ["records", index]
    if not isinstance(record, dict):
        received = type_name(record)
        return [issue(base, f"Expected object, received {received}", "object", received, "invalid_type")]
    issues: list[dict[str, Any]] = []
    for key in record:
        if key not in LEAD_FIELDS:
            issues.append(
                issue([*base, key], f"Unrecognized key(s) in object: '{key}'", "never", str(key), "unrecognized_keys")
            )
    for name, (kind, limit) in LEAD_FIELDS.items():
        path = [*base, name]
        if name not in record:
            if name == "phoneNumber":
                issues.append(issue(path, "Required", "string", "undefined", "invalid_type"))
            continue
        value = record[name]
        if value is None:
            if name == "phoneNumber":
                issues.append(issue(path, "Expected string, received null", "string", "null", "invalid_type"))
            continue
        issues.extend(_check_field(path, kind, limit, value))
    if record.get("postalCode") is None and record.get("timezone") is None:
        issues.append(
            issue(
                [*base, "postalCode"],
                "Either postalCode or timezone is required (TCPA compliance)",
                "string",
                "null",
                "custom",
            )
        )
    return issues


def _check_field(path: list[Any], kind: str, limit: Any, value: Any) -> list[dict[str, Any]]:
    received = type_name(value)
    if kind in ("str", "str5", "phone", "timezone", "dob", "enum"):
        if not isinstance(value, str):
            return [issue(path, f"Expected string, received {received}", "string", received, "invalid_type")]
        if kind == "str" and len(value) > limit:
            return [
                issue(
                    path,
                    f"String must contain at most {limit} character(s)",
                    f"<={limit} characters",
                    f"{len(value)} characters",
                    "too_big",
                )
            ]
        if kind == "str5" and len(value) != 5:
            code = "too_small" if len(value) < 5 else "too_big"
            return [
                issue(
                    path,
                    "String must contain exactly 5 character(s)",
                    "5 characters",
                    f"{len(value)} characters",
                    code,
                )
            ]
        if kind == "phone" and not any(r.match(value) for r in PHONE_RES):
            return [
                issue(
                    path,
                    "Invalid phone number. Accepts: +1XXXXXXXXXX, XXXXXXXXXX, (XXX) XXX-XXXX",
                    "+1XXXXXXXXXX | XXXXXXXXXX | (XXX) XXX-XXXX",
                    value,
                    "invalid_string",
                )
            ]
        if kind == "timezone" and not _valid_timezone(value):
            return [issue(path, "Invalid timezone", "IANA timezone or EST, CST, MST, PST", value, "invalid_string")]
        if kind == "dob" and not DOB_RE.match(value):
            return [issue(path, "Invalid", "MM-DD-YYYY or MM/DD/YYYY", value, "invalid_string")]
        if kind == "enum" and value not in limit:
            expected = " | ".join(f"'{c}'" for c in limit)
            return [
                issue(
                    path,
                    f"Invalid enum value. Expected {expected}, received '{value}'",
                    expected,
                    value,
                    "invalid_enum_value",
                )
            ]
        return []
    if kind == "int32":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [issue(path, f"Expected number, received {received}", "number", received, "invalid_type")]
        if isinstance(value, float) and not value.is_integer():
            return [issue(path, "Expected integer, received float", "integer", "float", "invalid_type")]
        if value < INT32[0]:
            return [
                issue(
                    path,
                    f"Number must be greater than or equal to {INT32[0]}",
                    f">={INT32[0]}",
                    str(value),
                    "too_small",
                )
            ]
        if value > INT32[1]:
            return [
                issue(path, f"Number must be less than or equal to {INT32[1]}", f"<={INT32[1]}", str(value), "too_big")
            ]
        return []
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [issue(path, f"Expected number, received {received}", "number", received, "invalid_type")]
        return []
    if kind == "bool":
        if not isinstance(value, bool):
            return [issue(path, f"Expected boolean, received {received}", "boolean", received, "invalid_type")]
        return []
    if kind == "custom":
        return _check_custom_fields(path, value, limit)
    raise AssertionError(kind)


def _check_custom_fields(path: list[Any], value: Any, limit: int) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        received = type_name(value)
        return [issue(path, f"Expected array, received {received}", "array", received, "invalid_type")]
    if len(value) > limit:
        return [
            issue(
                path,
                f"Array must contain at most {limit} element(s)",
                f"<={limit} items",
                f"{len(value)} items",
                "too_big",
            )
        ]
    issues = []
    for i, item in enumerate(value):
        ipath = [*path, i]
        if not isinstance(item, dict):
            received = type_name(item)
            issues.append(issue(ipath, f"Expected object, received {received}", "object", received, "invalid_type"))
            continue
        for key in item:
            if key not in ("fieldKey", "value"):
                issues.append(
                    issue(
                        [*ipath, key], f"Unrecognized key(s) in object: '{key}'", "never", str(key), "unrecognized_keys"
                    )
                )
        key = item.get("fieldKey")
        if not isinstance(key, str):
            received = "undefined" if "fieldKey" not in item else type_name(key)
            issues.append(
                issue([*ipath, "fieldKey"], f"Expected string, received {received}", "string", received, "invalid_type")
            )
        elif not 1 <= len(key) <= 100:
            code = "too_small" if not key else "too_big"
            issues.append(
                issue(
                    [*ipath, "fieldKey"],
                    "String must contain between 1 and 100 character(s)",
                    "1..100 characters",
                    f"{len(key)} characters",
                    code,
                )
            )
        val = item.get("value")
        ok = val is None or isinstance(val, (str, int, float, bool))
        if isinstance(val, list):
            ok = all(isinstance(v, str) for v in val)
        if not ok:
            received = type_name(val)
            issues.append(
                issue(
                    [*ipath, "value"],
                    f"Expected string | number | boolean | string[] | null, received {received}",
                    "string | number | boolean | array<string> | null",
                    received,
                    "invalid_union",
                )
            )
    return issues


def dob_to_iso(value: str) -> str:
    """``MM-DD-YYYY`` / ``MM/DD/YYYY`` to ``YYYY-MM-DD`` (no calendar check, as the API's regex)."""
    month, day, year = value[0:2], value[3:5], value[6:10]
    return f"{year}-{month}-{day}"
