"""The choice of limiter: the table of backends, by the connection extra ``rate_limit_backend``, and the functions
that pick one (:func:`limiter_for`) and forget them (:func:`forget_shared_limiters`).

Each backend module offers a builder that returns the process's one limiter for a base URL, key and window (made the
first time, then shared by every hook of the process); :data:`BACKENDS` maps the extra's values to them, as the
``limits`` library maps storage URI schemes to its storage classes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from airflow_provider_carecycle.hooks.ratelimit.base import DEFAULT_MAX_WAIT_S, Limiter, forget_registered
from airflow_provider_carecycle.hooks.ratelimit.host import forget_state_files, host_limiter
from airflow_provider_carecycle.hooks.ratelimit.process import shared_limiter
from airflow_provider_carecycle.hooks.ratelimit.redis import redis_limiter


@dataclass(frozen=True)
class LimiterSettings:
    """What a hook's connection says about its limiter.

    :param backend: the extra ``rate_limit_backend``, stripped (``host`` when not set).
    :param base_url: the API's base URL.
    :param api_key: the key (or credential identity) the limit belongs to; only its hash is kept.
    :param requests_per_window: this process's share of the key's limit (``requests_per_minute``).
    :param window_s: the window in seconds.
    :param directory: the extra ``rate_limit_dir``.
    :param max_wait_s: the extra ``max_retry_after``.
    :param conn_id: the Airflow connection, named in error messages.
    """

    backend: str
    base_url: str
    api_key: str
    requests_per_window: int
    window_s: float
    directory: str | None
    max_wait_s: float
    conn_id: str


def _host(s: LimiterSettings) -> Limiter:
    return host_limiter(
        s.base_url,
        s.api_key,
        s.requests_per_window,
        s.window_s,
        directory=s.directory,
        max_wait_s=s.max_wait_s,
        conn_id=s.conn_id,
    )


def _process(s: LimiterSettings) -> Limiter:
    return shared_limiter(s.base_url, s.api_key, s.requests_per_window, s.window_s, max_wait_s=s.max_wait_s)


def _redis(s: LimiterSettings) -> Limiter:
    return redis_limiter(
        s.backend,
        s.base_url,
        s.api_key,
        s.requests_per_window,
        s.window_s,
        directory=s.directory,
        max_wait_s=s.max_wait_s,
        conn_id=s.conn_id,
    )


#: ``rate_limit_backend`` -> its builder: a backend's name as written, or a server's URL scheme (lower case) and
#: ``://``. ``host`` is the default.
BACKENDS: Mapping[str, Callable[[LimiterSettings], Limiter]] = {
    "host": _host,
    "process": _process,
    "redis://": _redis,
    "rediss://": _redis,
    "unix://": _redis,
}


def limiter_for(
    base_url: str,
    api_key: str,
    requests_per_window: int,
    window_s: float = 60.0,
    *,
    backend: str | None = None,
    directory: str | None = None,
    max_wait_s: float = DEFAULT_MAX_WAIT_S,
    conn_id: str = "",
) -> Limiter:
    """The limiter every hook of this process uses for ``(base_url, api_key)``, picked from the connection extras.

    :param base_url: the API's base URL.
    :param api_key: the key (or credential identity) the limit belongs to; only its hash is kept.
    :param requests_per_window: this process's share of the key's limit (``requests_per_minute``).
    :param window_s: the window in seconds.
    :param backend: extra ``rate_limit_backend``: ``None``/``""``/``"host"`` for the host-wide limiter with
        adaptive pacing, a ``redis://``/``rediss://``/``unix://`` URL for the Redis backend, or ``"process"`` for
        the in-process limiter (one process only: for tests and single-task deployments).
    :param directory: extra ``rate_limit_dir``: where the host-wide state lives (default: a per-user folder under
        the system temp dir).
    :param max_wait_s: extra ``max_retry_after``: the longest a pause or an in-flight claim read from shared state
        may hold a caller back (at least one window).
    :param conn_id: the Airflow connection, named in error messages.
    :raises ValueError: when ``backend`` or ``directory`` is not usable (the message names the connection and extra).
    """
    if backend is not None and not isinstance(backend, str):
        raise ValueError(f"Airflow connection {conn_id!r}: extra 'rate_limit_backend' must be a string.")
    name = (backend or "host").strip()
    build = BACKENDS.get(name) or BACKENDS.get(f"{name.split('://', 1)[0].lower()}://")
    if build is None:
        raise ValueError(
            f"Airflow connection {conn_id!r}: extra 'rate_limit_backend' must be 'host' or a redis://, rediss:// or "
            "unix:// URL of a Redis server, or 'process' (one process only: for tests and single-task deployments)."
        )
    settings = LimiterSettings(name, base_url, api_key, requests_per_window, window_s, directory, max_wait_s, conn_id)
    return build(settings)


def forget_shared_limiters(base_url: str) -> None:
    """Drop the limiters of ``base_url`` (every key, every backend), e.g. once a test emulator reset its windows.

    The host-wide state files of ``base_url`` are deleted too (in the folders this process used and the default).

    :param base_url: the API's base URL.
    """
    forget_registered(base_url)
    forget_state_files(base_url.rstrip("/"))
