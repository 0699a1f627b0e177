"""The lead sync: what gets each valid lead to careCycle once, and remembers what careCycle holds.

The rules a lead must meet (its fields, their validation, the shape of a rejection) are in
:mod:`airflow_provider_carecycle.leads`; everything here is about getting leads there and keeping count:

* :mod:`~.engine`: :class:`~.engine.LeadUploader`, the run (validate, spool, batch, send at the rate limit,
  settle, stop), what the lead upload operators execute;
* :mod:`~.spool`: one :class:`~.spool.LeadItem` per valid lead and the on-disk, nameless spool that deduplicates them;
* :mod:`~.answers`: the rules that read careCycle's answers (400 isolation and bisection, 413 halving, 200
  accounting), pure functions;
* :mod:`~.summary`: :class:`~.summary.UploadSummary`, the upload family's outcome (its XCom value);
* :mod:`~.checkpoint`: which batches careCycle settled, to resume a run after a crash;
* :mod:`~.ledger`: which version of each lead careCycle acknowledged, so a run sends only what changed;
* :mod:`~.watermark`: how far a CRM feed has read, and the customers to fetch again;
* :mod:`~.stores`: the one document store and the one folder store on object storage, with the one private atomic
  write; :mod:`~.state_store`: Airflow 3.3's task and asset state stores as document stores;
* :mod:`~.protocols`: the structural types the engine and the stores are written against.

Only the engine imports Airflow (careCycle's errors and the rejected file's writer); every other module here is
pure Python until a store on object storage is built (``tests/sync/test_purity.py``).
"""
