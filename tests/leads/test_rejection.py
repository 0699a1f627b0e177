"""One rejection shape: the validator's, the checkpoint's and the rejected file's JSON form."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_carecycle.leads import REJECTION_CODES, LeadValidator, Rejection
from airflow_provider_carecycle.leads.rejection import STAGE_API, STAGE_VALIDATION, rejected_line
from airflow_provider_carecycle.storage import RecordWriter, iter_records


def test_the_json_form_round_trips_with_and_without_a_position():
    for rejection in (
        Rejection("dateOfBirth", "dateOfBirth: date is in the future", "out_of_range"),
        Rejection(None, "API: Source not found", "api_error", position=17),
    ):
        text = json.dumps(rejection.to_json())
        assert Rejection.from_json(json.loads(text)) == rejection
    assert "position" not in Rejection("city", "city: x", "too_long").to_json()
    assert {"api_error", "api_validation_error", "required"} <= set(REJECTION_CODES)


BAD_FORMS: dict[str, Any] = {
    "a list (the version 2 checkpoint form)": [3, None, "api_error", "API: x"],
    "no reason": {"field": None, "code": "api_error"},
    "an unknown key": {"field": None, "code": "api_error", "reason": "API: x", "value": "555-0142"},
    "a field that is a number": {"field": 3, "code": "api_error", "reason": "API: x"},
    "a code that is null": {"field": None, "code": None, "reason": "API: x"},
    "a negative position": {"field": None, "code": "api_error", "reason": "API: x", "position": -1},
    "a position that is a boolean": {"field": None, "code": "api_error", "reason": "API: x", "position": True},
}


@pytest.mark.parametrize("value", list(BAD_FORMS.values()), ids=list(BAD_FORMS))
def test_a_malformed_json_form_is_a_clear_error_that_quotes_no_value(value):
    with pytest.raises(ValueError, match="a rejection") as caught:
        Rejection.from_json(value)
    assert "555-0142" not in str(caught.value) and "API: x" not in str(caught.value)


def test_a_rejected_line_splices_the_record_text_in_as_it_was_kept():
    record_text = '{"phoneNumber":"2125550142","note":"caf\u00e9","n":1.50}'  # not how json.dumps would write 1.5
    rejections = LeadValidator().validate({"phoneNumber": "2125550142"}).rejections
    line = rejected_line(STAGE_VALIDATION, 7, rejections, record_text)

    assert line.endswith(f',"record":{record_text}}}') and "\n" not in line
    entry = json.loads(line)
    assert (entry["stage"], entry["row"], entry["field"], entry["code"]) == (
        "validation",
        7,
        "postalCode|timezone",
        "required",
    )
    assert [Rejection.from_json(e) for e in entry["errors"]] == rejections
    assert "batch" not in entry


def test_an_api_rejected_line_names_its_batch_and_position():
    refused = Rejection("city", "API: city: Invalid city", "api_validation_error", position=4)
    entry = json.loads(rejected_line(STAGE_API, 42, [refused], '{"city":"x"}', batch=3))
    assert entry == {
        "stage": "api",
        "row": 42,
        "batch": 3,
        "field": "city",
        "code": "api_validation_error",
        "reason": "API: city: Invalid city",
        "errors": [refused.to_json()],
        "record": {"city": "x"},
    }


@pytest.mark.parametrize("name", ["rejected.jsonl", "rejected.jsonl.gz", "rejected.json"])
def test_the_writer_writes_json_text_as_it_is(tmp_path, name):
    lines = ['{"a":1.50}', '{"b":"caf\u00e9"}']
    with RecordWriter(str(tmp_path / name)) as writer:
        for line in lines:
            writer.write_json_text(line)
    assert writer.count == 2
    assert list(iter_records(str(tmp_path / name))) == [{"a": 1.5}, {"b": "caf\u00e9"}]
    if name == "rejected.jsonl":
        assert (tmp_path / name).read_text(encoding="utf-8") == "".join(line + "\n" for line in lines)


def test_the_writer_refuses_json_text_for_csv(tmp_path):
    with pytest.raises(ValueError, match="rejected.csv"), RecordWriter(str(tmp_path / "rejected.csv")) as writer:
        writer.write_json_text('{"a":1}')
