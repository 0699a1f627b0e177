"""Client-side rate limiting: one limiter per API key and window, shared by every hook that uses the key.

Layout (each module imports only the ones listed before it; nothing imports its importer):

* :mod:`.base`: the :class:`Limiter` interface, the :class:`Slot` a claim returns, the sliding-window arithmetic
  every backend shares, and the table of the process's limiter instances;
* :mod:`.adaptive`: adaptive pacing (AIMD), plain data, for a limiter that cannot see every client of the key;
* :mod:`.process`: :class:`~.process.RateLimiter`, one process only (connection extra
  ``rate_limit_backend = "process"``), for tests and single-task deployments: each task process then spends the
  whole key;
* :mod:`.host`: :class:`~.host.HostRateLimiter`, every process of one host through an ``fcntl``-locked file, with
  adaptive pacing for the hosts it cannot see. The default;
* :mod:`.redis`: :class:`~.redis.RedisRateLimiter`, every host, exactly, through one atomic Lua script per request in
  Redis (``rate_limit_backend = "redis://..."``), falling back to the host-wide limiter while Redis is unreachable;
* :mod:`.factory`: :data:`~.factory.BACKENDS`, the table from ``rate_limit_backend`` to each backend's builder,
  :func:`limiter_for` (the process's one limiter for a base URL, key and window) and :func:`forget_shared_limiters`.

The hooks import :func:`limiter_for` from here. See ``docs/rate-limits-and-errors.md``.
"""

from __future__ import annotations

from airflow_provider_carecycle.hooks.ratelimit.base import Limiter, Slot
from airflow_provider_carecycle.hooks.ratelimit.factory import forget_shared_limiters, limiter_for

__all__ = ["Limiter", "Slot", "forget_shared_limiters", "limiter_for"]
