"""The CareCloud CRM REST API emulator: ``server`` (routes, tokens and the control API), ``seed`` (the customers)
and ``cli`` (``carecloud-crm-emulator``)."""

from __future__ import annotations
