"""The CRM watermark never skips a change (issue 20, item 2): feeds sharing a connection, DST, rows that move while
the CRM is paged, leads careCycle refused, future dates, answers out of order.

Every run is a real ``CareCloudCrmToCareCycleLeadsOperator(incremental=True)`` over real HTTP against the CareCloud
emulator (which the test makes misbehave through its control API) and the careCycle emulator (sometimes behind a
:class:`HostileServer`). Each test checks the end state: the change the CRM holds is what careCycle holds.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_carecycle.carecloud.exceptions import CareCloudMalformedAnswerError
from airflow_provider_carecycle.carecloud.hook import CareCloudCrmHook, parse_carecloud_datetime
from airflow_provider_carecycle.carecloud.mapping import CARECLOUD_FIELD_MAPPING, CrmMapping
from airflow_provider_carecycle.leads import LeadValidator
from airflow_provider_carecycle.transfers.carecloud import CareCloudCrmToCareCycleLeadsOperator
from carecycle_emulator import CARECLOUD_ANCHOR as ANCHOR
from carecycle_emulator import TEST_API_KEY
from carecycle_emulator.carecloud.seed import SOURCES
from carecycle_emulator.pytest_plugin import carecloud_connection_json
from tests.adversarial.hostile_server import HostileServer, Recorded, Reply

UTC = timezone.utc
DAY = timedelta(days=1)
DEFAULTS = {"sourceId": "crm-feed"}
NEW_YORK = "America/New_York"


def feed(tmp_path: Path, **kwargs: Any) -> CareCloudCrmToCareCycleLeadsOperator:
    kwargs.setdefault("max_rejected_ratio", 1.0)
    kwargs.setdefault("sync_state_path", str(tmp_path / "ledger"))
    return CareCloudCrmToCareCycleLeadsOperator(task_id="crm_to_leads", defaults=DEFAULTS, incremental=True, **kwargs)


def window(since: datetime, before: datetime) -> dict[str, Any]:
    return {"changed_since": since.isoformat(), "changed_before": before.isoformat()}


def valid(customer: dict[str, Any]) -> bool:
    """Whether the CRM customer makes a lead careCycle can take (the seed has foreign phones and no zips)."""
    return LeadValidator(defaults=DEFAULTS).validate(CrmMapping(CARECLOUD_FIELD_MAPPING)(customer)).ok


def first_names(carecycle: Any) -> dict[str, str]:
    """What careCycle holds: externalId (the CRM customer id) -> the first name of the newest upload."""
    return {ext: customers[-1]["firstName"] for ext, customers in carecycle.get_customers_by_external_id().items()}


def missing(carecloud: Any, carecycle: Any, since: datetime, before: datetime, **match: Any) -> list[str]:
    """The valid CRM customers changed in ``[since, before)`` (and matching ``match``) that careCycle does not hold
    as the CRM holds them."""
    held = first_names(carecycle)
    wanted = [
        c
        for c in carecloud.customers()
        if since <= parse_carecloud_datetime(c["last_change"], carecloud.project_tz) < before
        and all(c.get(k) == v for k, v in match.items())
        and valid(c)
    ]
    assert wanted, "the test needs customers in the window"
    return [c["customer_id"] for c in wanted if held.get(c["customer_id"]) != c["personal_information"]["first_name"]]


def through(hostile_server: Any, carecycle_emulator: Any, carecycle_connection: Any) -> HostileServer:
    """careCycle behind a hostile server, as ``carecycle_default`` (one destination for every feed of the test)."""
    server = hostile_server(upstream=carecycle_emulator.url)
    carecycle_connection(
        "carecycle_default",
        host=server.url,
        password=TEST_API_KEY,
        extra={"requests_per_minute": 6000, "max_retries": 0},
    )
    return server


def project_time_zone(carecloud_emulator: Any, monkeypatch: Any, zone: str) -> None:
    carecloud_emulator.configure(project_timezone=zone)
    monkeypatch.setenv(
        "AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT", carecloud_connection_json(carecloud_emulator, project_timezone=zone)
    )


def valid_ids(carecloud: Any, n: int) -> list[str]:
    return [c["customer_id"] for c in carecloud.customers() if valid(c)][:n]


# -- one watermark per feed ----------------------------------------------------------------------------------------


def test_two_feeds_on_one_crm_connection_keep_their_own_watermarks(
    carecloud_emulator, carecycle_emulator, hostile_server, carecycle_connection, tmp_path
):
    carecloud_emulator.reset(customers=400)
    server = through(hostile_server, carecycle_emulator, carecycle_connection)
    start = (ANCHOR - 3 * DAY).replace(tzinfo=UTC)

    def run(source: str, day: int) -> dict[str, Any]:
        since = start + day * DAY
        op = feed(tmp_path, extra_params={"customer_source_id": source}, **window(since, since + DAY))
        return op.execute({})

    a, b = SOURCES
    run(a, 0), run(b, 0)
    server.script = lambda r: Reply(503, {"message": "down"}) if r.path.startswith("/v2/leads") else None
    with pytest.raises(Exception, match="503"):
        run(b, 1)  # feed B fails on day 1: careCycle is down; nothing of B's day 1 reaches it
    server.script = None
    run(a, 1)  # feed A succeeds on day 1
    run(b, 2)  # feed B reads from its own watermark: its day 1 too

    assert missing(carecloud_emulator, carecycle_emulator, start, start + 3 * DAY, customer_source_id=b) == []
    assert missing(carecloud_emulator, carecycle_emulator, start, start + 2 * DAY, customer_source_id=a) == []
    assert len(list((tmp_path / "ledger").glob("watermark-*.json"))) == 2


# -- local times without an offset ---------------------------------------------------------------------------------


def test_a_change_in_the_repeated_hour_of_a_dst_fall_back_is_read_by_the_next_run(
    carecloud_emulator, carecycle_emulator, tmp_path, monkeypatch
):
    project_time_zone(carecloud_emulator, monkeypatch, NEW_YORK)
    carecloud_emulator.reset(anchor=datetime(2026, 10, 20), days=5)
    x, y = valid_ids(carecloud_emulator, 2)
    since = datetime(2026, 10, 31, tzinfo=UTC)
    # 01:30 the first time round (EDT, 05:30 UTC); the first run reads up to 05:40 UTC (01:40 EDT)
    carecloud_emulator.touch_customer(x, when=datetime(2026, 11, 1, 1, 30), first_name="Fallx")
    feed(tmp_path, **window(since, datetime(2026, 11, 1, 5, 40, tzinfo=UTC))).execute({})
    assert first_names(carecycle_emulator)[x] == "Fallx"

    # 01:10 the second time round (EST, 06:10 UTC): later than the watermark, earlier on the wall clock
    carecloud_emulator.touch_customer(y, when=datetime(2026, 11, 1, 1, 10), first_name="Fally")
    feed(tmp_path, **window(since, datetime(2026, 11, 1, 8, 0, tzinfo=UTC))).execute({})
    assert first_names(carecycle_emulator).get(y) == "Fally", "the change in the repeated hour was skipped"


def test_a_change_stamped_in_the_spring_forward_gap_does_not_push_the_watermark_an_hour_ahead(
    carecloud_emulator, carecycle_emulator, tmp_path, monkeypatch
):
    project_time_zone(carecloud_emulator, monkeypatch, NEW_YORK)
    carecloud_emulator.reset(anchor=datetime(2026, 3, 1), days=5)
    r, t = valid_ids(carecloud_emulator, 2)
    since = datetime(2026, 3, 7, tzinfo=UTC)
    # 02:45 does not exist on 8 March in New York (02:00 EST -> 03:00 EDT): a writer a little ahead of the switch
    # wrote EDT (06:45 UTC). Read as EST it would be 07:45 UTC, after the first run's end (03:20 EDT, 07:20 UTC).
    carecloud_emulator.touch_customer(r, when=datetime(2026, 3, 8, 2, 45), first_name="Gapr")
    first = feed(tmp_path, **window(since, datetime(2026, 3, 8, 7, 20, tzinfo=UTC))).execute({})
    assert first_names(carecycle_emulator)[r] == "Gapr"

    carecloud_emulator.touch_customer(t, when=datetime(2026, 3, 8, 3, 30), first_name="Gapt")  # 07:30 UTC
    feed(tmp_path, **window(since, datetime(2026, 3, 8, 9, 0, tzinfo=UTC))).execute({})
    assert first_names(carecycle_emulator).get(t) == "Gapt", "the change after the gap was skipped"
    assert datetime.fromisoformat(first["watermark"]) == datetime(2026, 3, 8, 6, 45, tzinfo=UTC)  # the early side


# -- rows that move while a run pages ------------------------------------------------------------------------------


def test_rows_deleted_above_the_page_boundary_mid_run_never_let_the_watermark_pass_a_skipped_row(
    carecloud_emulator, carecycle_emulator, tmp_path, captured_logs
):
    carecloud_emulator.reset(customers=400)
    since, before = (ANCHOR - 2 * DAY).replace(tzinfo=UTC), (ANCHOR + timedelta(seconds=1)).replace(tzinfo=UTC)
    newest_first = list(CareCloudCrmHook().iter_customers(sort_field="last_change", sort_direction="DESC", count=1000))
    # a page size whose first row of the second page is a valid lead: the row a shift of two skips
    page = next(p for p in range(4, 12) if valid(newest_first[p]) and valid(newest_first[p + 1]))
    skipped = newest_first[page]["customer_id"]
    carecloud_emulator.reset(customers=400)  # forget the read above
    carecloud_emulator.delete_after_pages(1, [newest_first[1]["customer_id"], newest_first[2]["customer_id"]])

    first = feed(tmp_path, per_page=page, **window(since, before)).execute({})
    assert skipped not in first_names(carecycle_emulator)  # the rows moved up by two: it slipped past unread

    feed(tmp_path, per_page=page, **window(since, before + DAY)).execute({})
    assert skipped in first_names(carecycle_emulator), "the row skipped while paging was never read"
    assert missing(carecloud_emulator, carecycle_emulator, since, before) == []
    assert "the rows moved while they were paged" in captured_logs()
    floor = parse_carecloud_datetime(newest_first[page + 1]["last_change"], UTC)
    assert datetime.fromisoformat(first["watermark"]) <= floor  # not past the first row after the boundary


# -- leads careCycle refused ---------------------------------------------------------------------------------------


def test_a_lead_careCycle_refused_in_a_green_incremental_run_is_tried_again_without_a_crm_edit(
    carecloud_emulator, carecycle_emulator, hostile_server, carecycle_connection, tmp_path
):
    carecloud_emulator.reset(customers=200)
    server = through(hostile_server, carecycle_emulator, carecycle_connection)
    since, before = (ANCHOR - 2 * DAY).replace(tzinfo=UTC), (ANCHOR + timedelta(seconds=1)).replace(tzinfo=UTC)
    in_window = sorted(
        (c for c in carecloud_emulator.customers() if valid(c)),
        key=lambda c: c["last_change"],
    )
    in_window = [c for c in in_window if since <= parse_carecloud_datetime(c["last_change"], UTC) < before]
    refused = {c["customer_id"] for c in in_window[:3]}  # the oldest of the window: far below the watermark

    def refuse(request: Recorded) -> None:  # careCycle refuses these three per record: "Source not found"
        if request.path.split("?")[0] == "/v2/leads/upload":
            body = request.json()
            for record in body["records"]:
                if record.get("externalId") in refused:
                    record["sourceId"] = "no-such-source"
            request.body = json.dumps(body).encode()
            request.headers["content-length"] = str(len(request.body))

    server.script = refuse
    first = feed(tmp_path, **window(since, before)).execute({})  # green: max_rejected_ratio=1.0
    assert first["rejected"] >= 3 and not refused & set(first_names(carecycle_emulator))

    server.script = None  # careCycle would take them now; nobody edits them in the CRM
    feed(tmp_path, **window(since, before + DAY)).execute({})
    assert refused <= set(first_names(carecycle_emulator)), "a refused lead was never tried again"


# -- future dates --------------------------------------------------------------------------------------------------


def test_a_last_change_in_the_future_never_moves_the_watermark_past_the_runs_start(
    carecloud_emulator, carecycle_emulator, tmp_path
):
    f, g = valid_ids(carecloud_emulator, 2)
    now = carecloud_emulator.now()
    carecloud_emulator.touch_customer(f, when=now + 2 * DAY, first_name="Future")  # a CRM clock two days ahead
    since = (ANCHOR - DAY).replace(tzinfo=UTC)
    later = (now + 3 * DAY).replace(tzinfo=UTC)
    started = datetime.now(UTC)
    first = feed(tmp_path, **window(since, later)).execute({})
    assert first_names(carecycle_emulator)[f] == "Future"

    carecloud_emulator.touch_customer(g, first_name="Present")  # a real change, now
    feed(tmp_path, **window(since, later)).execute({})
    assert first_names(carecycle_emulator).get(g) == "Present", "the watermark had moved into the future"
    assert started <= datetime.fromisoformat(first["watermark"]) <= datetime.now(UTC)  # the first run's start


# -- order is checked ----------------------------------------------------------------------------------------------


def test_an_answer_not_sorted_by_last_change_fails_the_task_with_a_clear_message(
    carecloud_emulator, carecycle_emulator, tmp_path
):
    carecloud_emulator.configure(honour_sort=False)  # a CRM that ignores sort_field: rows in insertion order
    since, before = (ANCHOR - 3 * DAY).replace(tzinfo=UTC), (ANCHOR + timedelta(seconds=1)).replace(tzinfo=UTC)
    with pytest.raises(CareCloudMalformedAnswerError, match="not sorted by last_change, newest first"):
        feed(tmp_path, **window(since, before)).execute({})
    assert not list((tmp_path / "ledger").glob("watermark-*.json"))
