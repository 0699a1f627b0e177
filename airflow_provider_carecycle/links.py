"""The "careCycle campaign" extra link: from a task to the campaign's page in careCycle's web app.

The task stores the link's URL in its own XCom when it starts (:meth:`CareCycleCampaignLink.persist`); the UI reads
it back for the try being looked at. This works the same on Airflow 2 (the webserver calls :meth:`get_link`) and
Airflow 3 (the API server reads the XCom under :attr:`xcom_key` itself), and each try shows its own campaign.

The web app's base URL is the careCycle connection's extra ``app_url``, default :data:`DEFAULT_APP_URL`; the page
is ``<app_url>/campaigns/<campaign id>`` (both assumptions: see ``docs/api-assumptions.md``). The URL holds the
campaign id only.

.. seealso:: ``docs/links.md``
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from airflow_provider_carecycle._compat import BaseOperatorLink, XCom, get_connection

log = logging.getLogger(__name__)

#: careCycle's web app, when the connection has no ``app_url`` extra (an assumption)
DEFAULT_APP_URL = "https://app.carecycle.ai"
#: the campaign page under the web app (an assumption)
CAMPAIGN_PAGE = "/campaigns/{campaign_id}"
#: the campaigns list, for a snapshot of several campaigns
CAMPAIGNS_PAGE = "/campaigns"
_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")


def app_url(conn_id: str) -> str:
    """The web app's base URL from the connection's ``app_url`` extra, else :data:`DEFAULT_APP_URL`.

    :param conn_id: the careCycle Airflow connection.
    :raises ValueError: when ``app_url`` is not an ``http(s)://`` URL, or holds user info (never shown).
    """
    extras = get_connection(conn_id).extra_dejson or {}
    value = extras.get("app_url") or DEFAULT_APP_URL
    if "@" in str(value):  # user info would be shown to everyone who sees the task, in the link
        raise ValueError(
            f"Airflow connection {conn_id!r}: extra 'app_url' holds a user name or password (not shown); give the "
            "web app's address without them."
        )
    parts = urlsplit(str(value).strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"Airflow connection {conn_id!r}: extra 'app_url' must be an http(s) URL, got {value!r}.")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def campaign_url(base: str, campaign_ids: list[str]) -> str:
    """The page of the one campaign in ``campaign_ids``, else the campaigns list.

    :param base: the web app's base URL.
    :param campaign_ids: the task's campaign ids (rendered).
    """
    if len(campaign_ids) == 1 and _ID.match(campaign_ids[0]):
        return base + CAMPAIGN_PAGE.format(campaign_id=quote(campaign_ids[0], safe="-"))
    return base + CAMPAIGNS_PAGE


class CareCycleCampaignLink(BaseOperatorLink):
    """Operator extra link "careCycle campaign", read from the task's XCom (stored when the task starts)."""

    name: ClassVar[str] = "careCycle campaign"
    key: ClassVar[str] = "carecycle_campaign_url"

    @property
    def xcom_key(self) -> str:
        """The XCom key the URL is stored under (Airflow 3's API server reads it directly)."""
        return self.key

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """The stored URL for this try, or ``""`` when the task has not stored one (yet).

        :param operator: the task.
        :param ti_key: the task instance (and try) the UI shows.
        """
        return XCom.get_value(key=self.key, ti_key=ti_key) or ""

    @classmethod
    def persist(cls, context: Mapping[str, Any], conn_id: str, campaign_ids: list[str]) -> str | None:
        """Store this try's campaign URL in the task's XCom; a broken ``app_url`` is logged, never fatal.

        :param context: the task's context.
        :param conn_id: the careCycle connection (its ``app_url`` extra).
        :param campaign_ids: the campaign ids (rendered).
        """
        ti = context.get("ti")
        if ti is None:  # run outside Airflow (a bare ``execute`` call): nothing to store the link in
            return None
        try:
            url = campaign_url(app_url(conn_id), campaign_ids)
        except Exception as err:  # a link is a convenience: it never fails the task
            log.warning("No careCycle campaign link: %s", err)
            return None
        ti.xcom_push(key=cls.key, value=url)
        return url
