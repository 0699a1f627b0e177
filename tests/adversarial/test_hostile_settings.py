"""Settings that render to nothing fail the task, instead of quietly doing nothing (issue 10).

A templated path whose value went missing (an unset param, a Variable holding ``""``) is a mistake, not a way
to switch a feature off: ``source_path`` rendering empty used to be a green no-op (``total: 0``), and an empty
``rejected_path`` / ``checkpoint_path`` silently dropped the rejected file / the checkpoint. ``None`` still
means "off" for the optional two. Each case runs against the careCycle emulator and checks nothing was sent.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_carecycle._compat import AirflowFailException
from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator

FAST = {"requests_per_minute": 6000}
RECORDS = [{"externalId": "h-1", "phoneNumber": "(212) 555-0101", "postalCode": "10001"}]


def uploads(emu: Any) -> list[dict[str, Any]]:
    return [r for r in emu.request_log() if r["path"] == "/v2/leads/upload"]


def rendered(op: CareCycleUploadLeadsOperator, **params: Any) -> CareCycleUploadLeadsOperator:
    op.render_template_fields({"params": params, "ds": "2026-03-01"})
    return op


@pytest.mark.parametrize("empty", ["", "   ", "\t\n"])
def test_a_source_path_that_renders_empty_fails_the_task(carecycle_emulator, tmp_path, empty):
    op = CareCycleUploadLeadsOperator(
        task_id="upload", source_path="{{ params.source }}", hook_params=FAST, rejected_path=str(tmp_path / "r.jsonl")
    )
    with pytest.raises(ValueError, match="source_path rendered to an empty string") as failure:
        rendered(op, source=empty).execute({})
    assert isinstance(failure.value, AirflowFailException)  # no retries: a retry would render the same
    assert not uploads(carecycle_emulator) and not list(tmp_path.iterdir())


def test_a_literal_empty_source_path_fails_too(carecycle_emulator, tmp_path):
    op = CareCycleUploadLeadsOperator(task_id="upload", source_path="", hook_params=FAST)
    with pytest.raises(ValueError, match="source_path rendered to an empty string"):
        op.execute({})
    assert not uploads(carecycle_emulator)


@pytest.mark.parametrize("setting", ["rejected_path", "checkpoint_path"])
@pytest.mark.parametrize("empty", ["", "  "])
def test_an_optional_path_that_renders_empty_fails_instead_of_turning_the_feature_off(
    carecycle_emulator, tmp_path, setting, empty
):
    op = CareCycleUploadLeadsOperator(
        task_id="upload", records=RECORDS, hook_params=FAST, **{setting: "{{ params.path }}"}
    )
    with pytest.raises(ValueError, match=f"{setting} rendered to an empty string.*None to turn it off") as failure:
        rendered(op, path=empty).execute({})
    assert isinstance(failure.value, AirflowFailException)
    assert not uploads(carecycle_emulator)


def test_none_still_turns_the_rejected_file_and_the_checkpoint_off(carecycle_emulator, tmp_path):
    op = CareCycleUploadLeadsOperator(
        task_id="upload", records=RECORDS, hook_params=FAST, rejected_path=None, checkpoint_path=None
    )
    summary = rendered(op).execute({})
    assert (summary["uploaded"], summary["rejected_path"]) == (1, None)
    assert len(uploads(carecycle_emulator)) == 1 and not list(tmp_path.iterdir())


def test_a_templated_source_path_that_renders_to_a_file_still_uploads_it(carecycle_emulator, tmp_path):
    source = tmp_path / "leads_2026-03-01.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    op = CareCycleUploadLeadsOperator(
        task_id="upload",
        source_path=str(tmp_path / "leads_{{ ds }}.jsonl"),
        rejected_path=str(tmp_path / "rejected_{{ ds }}.jsonl"),
        hook_params=FAST,
    )
    summary = rendered(op).execute({})
    assert (summary["total"], summary["uploaded"]) == (1, 1)
    assert (tmp_path / "rejected_2026-03-01.jsonl").read_text() == ""


@pytest.mark.parametrize("empty", ["", "  "])
def test_a_sensor_campaign_id_that_renders_empty_fails_at_once(carecycle_emulator, empty):
    from airflow_provider_carecycle.sensors.campaigns import CareCycleCampaignStatsSensor

    sensor = CareCycleCampaignStatsSensor(
        task_id="wait", campaign_id="{{ params.campaign }}", threshold={"completed": 1}, hook_params=FAST
    )
    sensor.render_template_fields({"params": {"campaign": empty}})
    with pytest.raises(AirflowFailException, match="campaign_id rendered to an empty string"):
        sensor.execute({})
    assert not carecycle_emulator.request_log()
