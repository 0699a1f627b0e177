"""CareCloud CRM -> careCycle: every day, turn the CRM customers changed yesterday into careCycle leads.

What it shows, task by task::

    snapshot_before -> crm_to_leads -> do_not_call_to_crm -> snapshot_after -> wait_for_first_calls

1. ``snapshot_before``: the campaign's ``customerStats`` before the upload, appended to a dated JSON Lines file.
2. ``crm_to_leads``: reads the CareCloud CRM customers whose ``last_change`` falls in the run's data interval, maps
   them to careCycle leads, validates and normalises them, uploads the valid ones in batches and writes every
   rejected one (a phone outside the US, no zip, ...) with its reason to a file. The task fails only when more
   than ``max_rejected_ratio`` of the records were rejected, and even then after uploading every valid lead.
   Consent travels with every lead: a customer the CRM deleted, or whose marketing-communication consent is
   withdrawn, is sent with ``doNotCall`` (careCycle has no delete: the flag is what stops its calls), or, when
   careCycle never held them, not sent at all (``suppressed``). See ``docs/operators/consent.md``.
3. ``do_not_call_to_crm``: the other half of the loop: every careCycle customer who said "do not call" on a call
   has the consent withdrawn in the CRM (read-modify-write, no CRM edit lost).
4. ``snapshot_after``: the same figures after the upload (new leads join campaigns with a "Lead Created" entry).
5. ``wait_for_first_calls``: a deferrable sensor that frees its worker slot while careCycle dials, and succeeds
   once the campaign has its first completed call.

Before the first run:

* connections ``carecycle_default`` (API key in the password) and ``carecloud_crm_default`` (see
  ``docs/connections.md``), e.g. as ``AIRFLOW_CONN_CARECYCLE_DEFAULT`` / ``AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT``;
* the pool every careCycle task runs in: it caps how many careCycle tasks wait for the key at once (the hook keeps
  every task under the API's 60 requests per minute without it)::

      airflow pools set carecycle_api 1 "careCycle API: 60 requests/minute shared by every DAG"

  (a task in a pool that does not exist is never scheduled);
* the campaign to watch: trigger with ``{"campaign_id": "<uuid>"}`` (``airflow dags trigger carecycle_crm_lead_feed
  --conf '{"campaign_id": "<uuid>"}'``) or set the Variable ``carecycle_campaign_id``;
* where files go: ``params.output_root`` (any ``ObjectStoragePath`` URI: ``s3://...``, ``gs://...``,
  ``file:///...``). The rejected file holds patient data: put it where your PHI policy allows.

A manual run works on the UTC day before it was triggered, with or without a logical date (on Airflow 3 a run
triggered without one has no data interval; ``run_interval`` below then takes the day before its ``run_after``).

Run it locally against the bundled emulators with ``make demo``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG

try:  # Airflow 3.2+ exposes timetables in its authoring API...
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # ...Airflow 2, 3.0 and 3.1 in airflow.timetables
    from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_carecycle.operators.base import run_interval
from airflow_provider_carecycle.operators.campaigns import CareCycleCampaignSnapshotOperator
from airflow_provider_carecycle.sensors.campaigns import CareCycleCampaignStatsSensor
from airflow_provider_carecycle.transfers.carecloud import CareCloudCrmToCareCycleLeadsOperator
from airflow_provider_carecycle.transfers.carecloud_consent import CareCycleDoNotCallToCareCloudOperator

#: every careCycle task runs in this pool (create it once, see above); its slots cap the concurrent careCycle tasks
CARECYCLE_POOL = "carecycle_api"
#: the campaign to snapshot and watch: the run's ``campaign_id`` param, else the ``carecycle_campaign_id`` Variable
#: (both read when the task runs, never when the DAG file is parsed)
CAMPAIGN_ID = "{{ params.campaign_id or var.value.carecycle_campaign_id }}"
#: the day whose CRM changes a run uploads: the run's data interval's start (a manual run's previous day); for a
#: manual Airflow 3 run without a logical date, which has no data interval, the day before it was triggered
DAY = "{{ run_interval(dag_run).start | ds }}"
#: one file per day; ``append=True`` below adds the "after" rows to the "before" rows, a small time series
STATS_PATH = "{{ params.output_root }}/campaign_stats/" + DAY + ".jsonl"

with DAG(
    dag_id="carecycle_crm_lead_feed",
    description="CareCloud CRM changes -> validated careCycle leads -> campaign results",
    # A daily *data interval* (yesterday 00:00 -> today 00:00 UTC): the CRM customers changed in it are this run's
    # work. Airflow 3 turns a bare "@daily" into a CronTriggerTimetable whose data interval is empty, so the
    # interval timetable is spelled out; it behaves the same on Airflow 2.
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,  # a new deployment starts with yesterday, not with every day since start_date
    max_active_runs=1,  # one upload at a time: runs of the same DAG would share the careCycle rate limit
    default_args={
        # Network trouble is retried inside the hooks (429/5xx with backoff); these retries cover the rest, e.g.
        # a worker lost mid-upload. A retried upload skips the batches careCycle already acknowledged (checkpoint).
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
    },
    params={
        "output_root": "file:///tmp/carecycle",
        "campaign_id": None,
    },
    # run_interval(dag_run) in templates: the run's data interval, or the day before run_after without one
    user_defined_macros={"run_interval": run_interval},
    tags=["carecycle", "example", "leads"],
    doc_md=__doc__,
) as dag:
    snapshot_before = CareCycleCampaignSnapshotOperator(
        task_id="snapshot_before",
        campaign_ids=CAMPAIGN_ID,
        output_path=STATS_PATH,
        append=True,
        pool=CARECYCLE_POOL,
    )

    crm_to_leads = CareCloudCrmToCareCycleLeadsOperator(
        task_id="crm_to_leads",
        # The CRM customers changed in the run's data interval by default (the day before run_after for a run
        # without one); pass changed_since / changed_before (templated) to backfill another window. The default
        # mapping (names, email, phone, birthdate, zip, city, externalId = CRM customer_id) can be replaced with
        # field_mapping=.
        carecloud_crm_conn_id="carecloud_crm_default",
        carecycle_conn_id="carecycle_default",
        # Every record that cannot become a lead goes here with its field and reason (it holds patient data).
        rejected_path="{{ params.output_root }}/rejected/crm_leads_" + DAY + ".jsonl",
        # The failure policy. CRM data is messy: foreign phone numbers and missing zips are expected (the bundled
        # emulator rejects about a quarter of its customers on purpose), so up to 40% may be rejected before the
        # task fails. Start strict (0.0 fails on any rejection) and loosen it only as far as your data needs.
        max_rejected_ratio=0.4,
        batch_size=100,  # records per request (1-200); the hook keeps every request under the rate limit
        # A retry of this run skips the batches careCycle already acknowledged.
        checkpoint_path="{{ params.output_root }}/checkpoints/crm_leads_" + DAY + ".json",
        # Read from the last change a successful run synced, not from the interval's start, so a failed or skipped
        # day is read by the next run; the ledger in the same folder sends only what changed since careCycle last
        # accepted it (docs/operators/sync.md).
        incremental=True,
        sync_state_path="{{ params.output_root }}/ledgers/crm_leads",
        # Consent (docs/operators/consent.md): which CRM consent governs which careCycle flag (consent_mapping, by
        # text_id; the default: marketing communication governs calls, SMS and e-mail), and what a consent that was
        # never set and a non-active customer mean. "do_not_call" for both calls only customers who said yes.
        unset_consent="call",
        inactive="call",
        pool=CARECYCLE_POOL,
    )

    do_not_call_to_crm = CareCycleDoNotCallToCareCloudOperator(
        task_id="do_not_call_to_crm",
        carecloud_crm_conn_id="carecloud_crm_default",
        carecycle_conn_id="carecycle_default",
        consent_text_id="marketing_communication",  # the CRM consent that governs calls
        dispositions=["Do Not Call"],  # a last call that ended like this counts, besides careCycle's doNotCall flag
        # Only the customers called since the previous successful run (the first run reads them all).
        state_path="{{ params.output_root }}/state/do_not_call_to_crm.json",
        pool=CARECYCLE_POOL,
    )

    snapshot_after = CareCycleCampaignSnapshotOperator(
        task_id="snapshot_after",
        campaign_ids=CAMPAIGN_ID,
        output_path=STATS_PATH,
        append=True,
        pool=CARECYCLE_POOL,
    )

    wait_for_first_calls = CareCycleCampaignStatsSensor(
        task_id="wait_for_first_calls",
        campaign_id=CAMPAIGN_ID,
        threshold={"completed": 1},  # the first completed call; e.g. {"completed_ratio": 0.5} waits for more
        # Deferrable: after one check the wait moves to the triggerer, so no worker slot (or pool slot) is held
        # for hours. Needs a running triggerer (`airflow triggerer`); dag.test() runs the trigger in-process.
        deferrable=True,
        poke_interval=300,  # one request per check; calls take minutes, so five minutes is plenty
        timeout=int(timedelta(hours=6).total_seconds()),  # then the task fails: nobody was reached in 6 hours
        pool=CARECYCLE_POOL,
    )

    snapshot_before >> crm_to_leads >> do_not_call_to_crm >> snapshot_after >> wait_for_first_calls
