"""The async half of the transport: :class:`AsyncHttpSender`, for code that runs on an event loop (the triggerer).

A deferred sensor's poll must never hold one of the triggerer's few threads: every other trigger that needs a thread
(many providers' do) would stall behind it. So here the HTTP exchange is ``httpx``'s ``AsyncClient`` (Airflow ships
``httpx`` on every supported line), and the limiter's waits, the backoff and a 429's ``retryAfter`` are
``asyncio.sleep``s through the limiter's async half
(:class:`~airflow_provider_carecycle.hooks.ratelimit.base.AsyncLimiter`), on the same budget as the workers'
synchronous requests.

The rules are the synchronous transport's (:mod:`~airflow_provider_carecycle.hooks._http`), most of them the same
code (:class:`~airflow_provider_carecycle.hooks._http.SenderRules`, the settings check, the error and JSON answer
rules):

* redirects are never followed (``follow_redirects=False``), a 3xx is an error naming its status and target host;
* the client ignores the environment (``trust_env=False``): the connection's proxies and CA bundle win, and the
  environment applies only where the connection says nothing, by ``requests``' own rule
  (:func:`~airflow_provider_carecycle.hooks._http.resolved_proxies`, ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``);
* the base URL's checks (``http://`` only to loopback, no user info) and the key's (a header cannot carry it) are the
  hook's, made when it reads its connection, before any request;
* every attempt has an overall deadline of ``timeout`` seconds, whole body included (``asyncio.wait_for``): a server
  that trickles bytes cannot hold a trigger; a body cut mid-way is a dropped connection, retried like one;
* error messages are built by the hook from the status and the API's code only, never its free text.

``httpx`` is imported when the first client is made, not when this module is.
"""

from __future__ import annotations

import asyncio
import functools
import os
import platform
import ssl
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_carecycle import __version__
from airflow_provider_carecycle.exceptions import ApiError
from airflow_provider_carecycle.hooks._http import CLAIM_HOLD_TIMEOUTS, AnswerDeadlineExceeded, SenderRules
from airflow_provider_carecycle.hooks.ratelimit.base import DEFAULT_ASYNC_SLEEP, AsyncLimiter, AsyncSleep

if TYPE_CHECKING:
    import httpx


@functools.cache
def async_user_agent() -> str:
    """The async transport's ``User-Agent``: the provider's version, ``httpx``'s and Python's."""
    import httpx

    python = platform.python_version()
    return f"airflow-provider-carecycle/{__version__} python-httpx/{httpx.__version__} python/{python}"


@functools.lru_cache(maxsize=8)
def tls_context(verify: bool | str) -> ssl.SSLContext | bool:
    """The TLS setting of a client: ``False`` (no verification, the connection said so), or a context trusting the
    connection's CA bundle (a file or a folder), else the bundle ``requests`` uses, so both transports trust the same
    authorities. Made once per setting: loading a bundle takes tens of milliseconds, too long for the event loop, so
    a trigger makes it in its preparing thread (see ``ApiHook.prepare_async``).

    :param verify: the hook's resolved ``verify`` (``True``, ``False`` or a path).
    """
    if verify is False:
        return False
    if isinstance(verify, str) and os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    import requests.utils

    return ssl.create_default_context(cafile=requests.utils.DEFAULT_CA_BUNDLE_PATH)


def _mount_pattern(scheme: str) -> str:
    """A ``requests`` proxies key (``https``, ``all``, ``https://host``) as an ``httpx`` mount pattern."""
    return scheme if "://" in scheme else f"{scheme}://"


#: each event loop's clients, one per (base URL, proxies, TLS setting, timeout): connections are pooled per loop
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


def async_client(*, proxies: Mapping[str, str], verify: bool | str, timeout: float) -> httpx.AsyncClient:
    """This event loop's ``httpx.AsyncClient`` for these settings (made on first use, then shared by every hook of the
    loop: one connection pool for hundreds of triggers). It reads nothing from the environment, follows no redirect
    and sends no credential of its own (the sender passes the hook's headers with each request).

    :param proxies: the resolved proxies (:func:`~airflow_provider_carecycle.hooks._http.resolved_proxies`).
    :param verify: the hook's resolved ``verify``.
    :param timeout: the per-operation timeout (the sender bounds each whole attempt besides).
    """
    import httpx

    key = (tuple(sorted(proxies.items())), verify, timeout)
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    client = per_loop.get(key)
    if client is None:
        tls = tls_context(verify)
        mounts = {
            _mount_pattern(scheme): httpx.AsyncHTTPTransport(proxy=url, verify=tls) for scheme, url in proxies.items()
        }
        client = per_loop[key] = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(verify=tls),
            mounts=mounts,
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(timeout),
        )
    return client


class AsyncHttpSender(SenderRules):
    """Send requests on the event loop with an async limiter, an overall deadline per attempt and status-aware
    retries; the waits are the async ``sleep`` (see :class:`~airflow_provider_carecycle.hooks._http.SenderRules`
    for what is decided as in the synchronous sender).

    :param headers: the headers of every request (``Accept``, ``User-Agent``, the vendor's auth).
    :param base_url: prefix of every ``path``.
    :param limiter: the limiter every attempt waits for, on the loop.
    :param proxies: the resolved proxies.
    :param verify: the resolved ``verify``.
    :param sleep: the async sleep before a retry (default ``asyncio.sleep``; injectable for tests).
    :param settings: the keyword arguments of :class:`~airflow_provider_carecycle.hooks._http.SenderRules`.
    """

    def __init__(
        self,
        headers: Mapping[str, str],
        base_url: str,
        limiter: AsyncLimiter,
        *,
        proxies: Mapping[str, str],
        verify: bool | str,
        sleep: AsyncSleep | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(base_url, **settings)
        self.headers = {"Accept": "application/json", "User-Agent": async_user_agent(), **headers}
        self.limiter = limiter
        self.proxies = dict(proxies)
        self.verify = verify
        self._sleep_fn = sleep or DEFAULT_ASYNC_SLEEP

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        max_retries: int | None = None,
    ) -> httpx.Response:
        """Send ``method path`` until it succeeds or retries run out; return the (status < 300) response, read whole.

        :param method: the HTTP method.
        :param path: the path under ``base_url``.
        :param params: query parameters (list values repeat the key; ``None`` values are left out, as ``requests``
            does).
        :param json: a JSON body.
        :param max_retries: retries for this request only (default: the sender's setting).
        :raises ApiError: what ``error_for``/``no_answer`` built, once retries are exhausted or at once when it is
            not retryable.
        """
        retries = self.max_retries if max_retries is None else max_retries
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(method, path, params, json)
            except ApiError as error:
                if attempt > retries or not self._retry_in_worker(error):
                    raise
                wait = self._retry_wait(error, attempt)
                if self._note_retry(error, wait, attempt):
                    await self.limiter.apause(wait)
                self.stats.add(waited_s=wait)
                await self._sleep_fn(wait)

    async def _attempt(self, method: str, path: str, params: Mapping[str, Any] | None, json: Any) -> httpx.Response:
        import httpx

        client = async_client(proxies=self.proxies, verify=self.verify, timeout=self.timeout)
        request = client.build_request(
            method,
            f"{self.base_url}{path}",
            params={k: v for k, v in (params or {}).items() if v is not None} or None,
            json=json,
            headers=self.headers,
        )
        slot = await self.limiter.aclaim(CLAIM_HOLD_TIMEOUTS * self.timeout)
        self.stats.add(waited_s=slot.waited, requests=1)
        try:
            response = await asyncio.wait_for(self._exchange(client, request, slot), self.timeout)
        except asyncio.TimeoutError:  # first: on Python 3.11+ it is the builtin TimeoutError, an OSError
            deadline = AnswerDeadlineExceeded(f"the answer did not arrive completely within {self.timeout:g} s")
            raise self.no_answer(method, path, deadline) from None
        except (httpx.TransportError, httpx.DecodingError, OSError) as err:
            raise self.no_answer(method, path, err) from None
        error = self._judge(method, path, response)
        if error is None:
            self.limiter.on_success()
            return response
        if self._rate_limited(error):
            await self.limiter.aon_rate_limited(error.retry_after)
        raise self._to_raise(error)

    async def _exchange(self, client: httpx.AsyncClient, request: httpx.Request, slot: Any) -> httpx.Response:
        """Send ``request``, settle the limiter's slot when the status line arrives (or the attempt ends without
        one), and read the whole body."""
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        finally:
            # the last moment careCycle can have counted the request (as in the synchronous sender)
            await self.limiter.asettle(slot)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response
