"""Assets (Airflow 3) / Datasets (Airflow 2.10+): the ``carecycle`` URI scheme and the operators' asset events.

* :func:`normalize_carecycle_uri` is the scheme's normaliser, registered in the provider info (``asset-uris`` on
  Airflow 3, ``dataset-uris`` on 2.10/2.11), so ``Asset("carecycle://api.carecycle.ai/leads")`` is accepted.
* :func:`emit_asset_events` fills a finished task's declared outlets: an ``AssetAlias`` (``DatasetAlias``) gets an
  event for the asset the task really wrote (the rendered file URI, or ``carecycle://<host>/leads``), an ``Asset``
  with that very URI gets the counts as its event's extra. Airflow only records events for declared outlets, so a
  task without outlets emits nothing.

Extras hold counts only, never record values.

.. seealso:: ``docs/assets.md``
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult

from airflow_provider_carecycle.hooks._http import url_authority

log = logging.getLogger(__name__)

SCHEME = "carecycle"
#: the careCycle dataset names an asset may point at (``campaigns/<id>`` too)
KNOWN_NAMES = ("leads", "customers", "customers/calls", "campaigns")


def normalize_carecycle_uri(parts: SplitResult) -> SplitResult:
    """Normalise ``carecycle://<host>/<name>``: lower-case host, no trailing slash; reject what cannot be one.

    :param parts: the split URI (Airflow passes ``urllib.parse.urlsplit(uri)``).
    :raises ValueError: without a host, with a query or fragment, or with a name that is not a careCycle dataset.
    """
    if not parts.netloc:
        raise ValueError("A carecycle:// asset URI needs the API host: carecycle://api.carecycle.ai/leads.")
    if "@" in parts.netloc:
        raise ValueError("A carecycle:// asset URI takes no user name or password: carecycle://api.carecycle.ai/leads.")
    if parts.query or parts.fragment:
        raise ValueError("A carecycle:// asset URI takes no query or fragment.")
    name = parts.path.strip("/")
    if name not in KNOWN_NAMES and not (name.startswith("campaigns/") and name.count("/") == 1):
        raise ValueError(f"carecycle:// asset name {name!r} is not one of {', '.join(KNOWN_NAMES)} or campaigns/<id>.")
    return SplitResult(SCHEME, parts.netloc.lower(), f"/{name}", "", "")


def leads_uri(base_url: str) -> str:
    """``carecycle://<host>/leads`` for the careCycle base URL the leads went to.

    :param base_url: the hook's base URL.
    """
    return f"{SCHEME}://{url_authority(base_url)}/leads"


def file_uri(path: Any) -> str:
    """The asset URI of a written file: its ``ObjectStoragePath`` URI (``s3://...``, ``file:///...``).

    :param path: a path or URI as the operator rendered it.
    """
    from airflow_provider_carecycle.storage import to_path

    return str(to_path(path))


def _same_uri(left: str, right: str) -> bool:
    return left.rstrip("/") == right.rstrip("/")


def emit_asset_events(operator: Any, context: Mapping[str, Any], uri: str, extra: Mapping[str, Any]) -> int:
    """Record an event for ``uri`` on the task's declared outlets; return how many outlets took it.

    :param operator: the running task.
    :param context: its context (``outlet_events``).
    :param uri: the asset the task wrote.
    :param extra: PHI-free counts for the event's extra.
    """
    from airflow_provider_carecycle._compat import Asset, AssetAlias

    events = context.get("outlet_events")
    outlets = list(getattr(operator, "outlets", None) or [])
    if events is None or not outlets:
        return 0
    emitted = 0
    for outlet in outlets:
        if isinstance(outlet, AssetAlias):
            if not _alias_registered(outlet.name):
                continue
            events[outlet].add(Asset(uri), extra=dict(extra))
            emitted += 1
        elif isinstance(outlet, Asset) and _same_uri(outlet.uri, uri):
            events[outlet].extra.update(extra)
            emitted += 1
    if emitted:
        log.info("Asset event for %s on %d outlet(s).", uri, emitted)
    return emitted


def _alias_registered(name: str) -> bool:
    """Whether Airflow can record an event through the alias ``name``.

    Airflow 3 always can. Airflow 2 fails the task at its end when the alias is not in the metadata DB: its DAG
    processor registers a deployed DAG's aliases, but ``dag.test()`` does not. Then the event is skipped, with a
    warning, instead.

    :param name: the alias's name.
    """
    from airflow_provider_carecycle._compat import AIRFLOW_V_3_0_PLUS

    if AIRFLOW_V_3_0_PLUS:
        return True
    from airflow.models.dataset import DatasetAliasModel  # type: ignore[import-not-found]  # Airflow 2 only
    from airflow.utils.session import create_session

    with create_session() as session:
        if session.query(DatasetAliasModel).filter(DatasetAliasModel.name == name).count():
            return True
    log.warning("Dataset alias %r is not registered (Airflow 2 dag.test() does not register aliases): no event.", name)
    return False
