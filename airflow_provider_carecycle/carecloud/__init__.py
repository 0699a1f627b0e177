"""The CareCloud CRM side: its hook, error family, query parameters and the mapping of its customers to leads.

The transfer that reads CRM customers into careCycle is
:class:`~airflow_provider_carecycle.transfers.carecloud.CareCloudCrmToCareCycleLeadsOperator`.
"""

from __future__ import annotations
