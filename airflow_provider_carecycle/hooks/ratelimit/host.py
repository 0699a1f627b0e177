"""The host-wide limiter: every process and thread of one host shares a key's budget through a locked state file.

Airflow runs each task instance in a process of its own (LocalExecutor, Celery's prefork workers), and a triggerer
runs triggers in threads; an in-process limiter lets each of them spend the whole key. :class:`HostRateLimiter`
keeps the key's sliding window in a small binary file instead, read and rewritten under an exclusive ``fcntl.flock``
for each claim and each answer, so every process of the host sees the others' requests, claims in flight, pauses
and adaptive allowance.

The file lives in the connection extra ``rate_limit_dir`` (default: ``carecycle-rate-limits-<uid>`` under the
system temp dir, created ``0700``). Whoever can write there can change the key's budget, so, as ssh does with key
files, a folder another user owns, or that others may write without the sticky bit a shared ``/tmp`` has, is
refused, and so is a state file that is not a regular file of this user's closed to others. Its name is derived from
the base URL and a hash of the key, never the key; it holds request times, nothing else. Times are wall-clock
(``time.time``), which every process of a host reads alike, also after a reboot; a value read from the file further
ahead than the limiter allows (the clock was set back, the file was damaged) is clamped, and a warning says so.

The async methods (a trigger's polls) act on the same file; they never wait for its lock on the event loop: a lock
another thread or process holds is tried again after a short ``asyncio.sleep``.

Why one module of this size: the file's format, its locking, the bounds on what it may say and the limiter's
synchronous and async halves on it change together.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import hashlib
import logging
import math
import os
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from airflow_provider_carecycle.hooks.ratelimit.adaptive import Aimd
from airflow_provider_carecycle.hooks.ratelimit.base import (
    DEFAULT_ASYNC_SLEEP,
    DEFAULT_MAX_WAIT_S,
    AsyncSleep,
    Slot,
    bounded_wait,
    check_rate,
    claim_when_free,
    horizon,
    key_digest,
    registered,
    window_delay,
    window_span,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: How long an async caller waits before trying the state file's lock again when another thread or process holds it
#: (a holder keeps it for one read and write of a small file: well under a millisecond).
LOCK_RETRY_S = 0.002


class _Busy(Exception):
    """The state file's lock is held by another thread or process (raised instead of blocking the event loop)."""


#: magic, paused_until, the AIMD state (base, cut_at, hold_until), the last claim's time, number of request times,
#: number of claims; then the request times (doubles), then the claims in flight (token, claimed at, counted as made
#: at if never settled)
_HEADER = struct.Struct("<8sdddddII")
_CLAIM = struct.Struct("<Qdd")
_MAGIC = b"ccrl\x00\x00\x00\x02"
#: in the file's name: a provider that wrote the first format (no claims) keeps its own file during an upgrade
_FORMAT = "v2"
#: mode bits that let other users write
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


def default_state_dir() -> Path:
    """``<system temp dir>/carecycle-rate-limits-<uid>``: one per OS user, so users never share (or spoof) a file."""
    return Path(tempfile.gettempdir()) / f"carecycle-rate-limits-{os.getuid()}"


def _make_folder(path: Path, *, parents: bool) -> None:
    """Create ``path`` (``0700``) and, with ``parents``, its missing parents (``0755``): whatever the umask, nothing
    the provider creates is open to other users' writes (``mkdir -p`` would give the parents ``0777 & ~umask``)."""
    if parents:
        for parent in reversed(path.parents):
            if not parent.exists():
                with contextlib.suppress(FileExistsError):
                    os.mkdir(parent, 0o755)
    with contextlib.suppress(FileExistsError):  # a file of that name: refused by the caller
        os.mkdir(path, 0o700)


def state_dir(directory: str | None, conn_id: str = "") -> Path:
    """The folder for host-wide state: ``directory`` or the default, created ``0700`` when missing.

    A configured folder must belong to this user (or to root, like ``/tmp``) and must not be writable by others
    unless it has the sticky bit (others may then add files, never remove or rename this user's). The default folder
    must be this user's and closed to others (``0700``).

    :param directory: the connection extra ``rate_limit_dir`` (``None``/empty: :func:`default_state_dir`).
    :param conn_id: the Airflow connection, named in error messages.
    :raises ValueError: when it is not a folder only this user can change.
    """
    if directory is not None and not isinstance(directory, str):
        raise ValueError(f"Airflow connection {conn_id!r}: extra 'rate_limit_dir' must be a folder path.")
    configured = bool(directory and directory.strip())
    path = Path(directory.strip()).expanduser() if configured and directory else default_state_dir()
    what = f"Airflow connection {conn_id!r}: rate-limit folder {str(path)!r}"
    try:
        _make_folder(path, parents=configured)
        info = path.lstat()
    except OSError as err:
        raise ValueError(f"{what} cannot be created ({err.strerror}); set the extra 'rate_limit_dir'.") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ValueError(f"{what} is not a folder; set the extra 'rate_limit_dir' to a folder.")
    if not configured and (info.st_uid != os.getuid() or info.st_mode & 0o077):
        raise ValueError(
            f"{what} belongs to another user or is open to others (it must be this user's, mode 0700); "
            "remove it or set the extra 'rate_limit_dir'."
        )
    if info.st_uid not in (os.getuid(), 0):
        raise ValueError(
            f"{what} belongs to another user (uid {info.st_uid}), who could change or replace the key's rate-limit "
            "state; set the extra 'rate_limit_dir' to a folder of this user's."
        )
    if info.st_mode & _OTHERS_WRITE and not info.st_mode & stat.S_ISVTX:
        raise ValueError(
            f"{what} can be written by other users (group or world writable, without the sticky bit), who could "
            "change or replace the key's rate-limit state; make it private (chmod go-w, or 700) or set the extra "
            "'rate_limit_dir' to a folder only this user can write."
        )
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{what} is not writable by this user; set the extra 'rate_limit_dir'.")
    return path


def _url_prefix(base_url: str) -> str:
    return hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()[:16]


def state_file(directory: Path, base_url: str, api_key: str, window_s: float) -> Path:
    """The state file of ``(base_url, api_key, window_s)`` in ``directory`` (named by hashes only).

    :param directory: the state folder (:func:`state_dir`).
    :param base_url: the API's base URL.
    :param api_key: the key or credential identity (only hashed).
    :param window_s: the window in seconds.
    """
    digest = key_digest(base_url, api_key)[:32]
    return directory / f"{_url_prefix(base_url)}-{digest}-{round(window_s * 1000)}ms-{_FORMAT}.window"


@dataclass
class _State:
    paused_until: float = 0.0
    aimd: Aimd = field(default_factory=Aimd)
    #: when the host's latest request was claimed (the adaptive pace counts from request starts)
    last_claim: float = -math.inf
    #: request times (answers' arrivals), oldest first
    sent: list[float] = field(default_factory=list)
    #: claims in flight: token -> (claimed at, counted as made at if never settled)
    claims: dict[int, tuple[float, float]] = field(default_factory=dict)


class HostRateLimiter:
    """At most ``requests_per_window`` requests in any ``window_s`` seconds across every process of the host.

    :param path: the state file (:func:`state_file`); created ``0600`` when missing.
    :param requests_per_window: this process's ceiling (the most recent hook's setting wins, as in-process).
    :param window_s: the window length in seconds (60 for careCycle).
    :param adaptive: adapt to 429s caused by other hosts (AIMD, see
        :mod:`~airflow_provider_carecycle.hooks.ratelimit.adaptive`); the allowance is shared by the host, and
        while it is cut the host's requests start no faster than ``requests_per_window`` evenly spread would.
    :param max_wait_s: the longest a pause, an in-flight claim or an adaptive hold read from the file may hold a
        caller back (the connection's ``max_retry_after``; at least one window); further ahead is clamped.
    :param clock: a wall clock every process of the host shares (injectable for tests).
    :param sleep: the sleep function (injectable for tests).
    :param async_sleep: the event loop's sleep for the async methods (injectable for tests).
    """

    def __init__(
        self,
        path: Path,
        requests_per_window: int,
        window_s: float = 60.0,
        *,
        adaptive: bool = True,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: AsyncSleep = DEFAULT_ASYNC_SLEEP,
    ) -> None:
        self.path = Path(path)
        self._async_sleep = async_sleep
        self.window_s = window_s
        self.adaptive = adaptive
        self._span = window_span(window_s)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.set_rate(requests_per_window, max_wait_s)

    def set_rate(self, requests_per_window: int, max_wait_s: float | None = None) -> None:
        """Change this process's ceiling and, if given, ``max_wait_s``."""
        self.limit = check_rate(requests_per_window)
        if max_wait_s is not None:
            self._horizon = horizon(max_wait_s, self._span)

    # -- the shared state ----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _state(self, *, write: bool = True, blocking: bool = True) -> Iterator[tuple[_State, float]]:
        """Lock the file (threads by a lock, processes by ``flock`` on a fresh descriptor: fork-safe), read it,
        bound it, yield it with the time, and write it back. Without ``blocking``, raise :class:`_Busy` instead of
        waiting for a lock another thread or process holds (the event loop's callers)."""
        if self._pid != os.getpid():  # a forked child (Celery prefork): a lock held by a parent thread stays held
            self._lock, self._pid = threading.Lock(), os.getpid()
        if not self._lock.acquire(blocking=blocking):
            raise _Busy
        try:
            fd = self._open()
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise _Busy from None
                state = self._read(fd)
                now = self._clock()
                self._bound(state, now)
                yield state, now
                if write:
                    os.pwrite(fd, self._pack(state), 0)
                    os.ftruncate(fd, _HEADER.size + 8 * len(state.sent) + _CLAIM.size * len(state.claims))
            finally:
                os.close(fd)  # releases the flock
        finally:
            self._lock.release()

    async def _on_loop(self, action: Callable[[bool], _T]) -> _T:
        """Run ``action(blocking=False)`` on the event loop, retrying after a short async sleep while another
        thread or process holds the state file's lock: the loop never waits for a lock.

        :param action: one step on the state (``_try_claim``, ``settle``, ...), taking ``blocking``.
        """
        while True:
            try:
                return action(False)
            except _Busy:
                await self._async_sleep(LOCK_RETRY_S)

    def _open(self) -> int:
        """The state file's descriptor, refused unless it is a regular file of this user's closed to others."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as err:
            problem = "is a symbolic link, not a regular file" if err.errno == errno.ELOOP else err.strerror
            raise ValueError(
                f"Rate-limit state file {str(self.path)!r} cannot be used ({problem}). It holds only request times: "
                "remove it and rerun."
            ) from None
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & _OTHERS_WRITE:
            return fd
        os.close(fd)
        raise ValueError(
            f"Rate-limit state file {str(self.path)!r} is not a regular file of this user's closed to others (it "
            "belongs to another user, or other users can write it): someone could change the key's budget. It "
            "holds only request times: remove it and rerun."
        )

    def _read(self, fd: int) -> _State:
        size = os.fstat(fd).st_size
        if size == 0:
            return _State()
        data = os.pread(fd, size, 0)
        if size < _HEADER.size or data[:8] != _MAGIC:
            raise self._corrupt()
        _, paused_until, base, cut_at, hold_until, last_claim, sent, claims = _HEADER.unpack_from(data)
        end = _HEADER.size + 8 * sent
        if end + _CLAIM.size * claims > size:
            raise self._corrupt()
        return _State(
            paused_until,
            Aimd(base, cut_at, hold_until),
            last_claim,
            list(struct.unpack_from(f"<{sent}d", data, _HEADER.size)),
            {token: (at, until) for token, at, until in _CLAIM.iter_unpack(data[end : end + _CLAIM.size * claims])},
        )

    @staticmethod
    def _pack(state: _State) -> bytes:
        aimd = state.aimd
        header = _HEADER.pack(
            _MAGIC,
            state.paused_until,
            aimd.base,
            aimd.cut_at,
            aimd.hold_until,
            state.last_claim,
            len(state.sent),
            len(state.claims),
        )
        claims = b"".join(_CLAIM.pack(token, at, until) for token, (at, until) in state.claims.items())
        return header + struct.pack(f"<{len(state.sent)}d", *state.sent) + claims

    def _bound(self, state: _State, now: float) -> None:
        """Clamp what the file says to what this provider can have written: no request time after ``now``, no pause,
        claim or adaptive hold ending more than ``max_wait_s`` ahead, no cut allowance below 1 or not a number (fail
        closed: a value that is not a number counts as the most restrictive one allowed). Claims whose hold ran out
        become requests made then; requests older than the window leave it."""
        latest = now + self._horizon
        clamped = []
        if not state.paused_until <= latest:
            clamped.append("a pause")
            state.paused_until = latest
        aimd = state.aimd
        if not (aimd.base >= 1.0 and aimd.cut_at <= now and aimd.hold_until <= latest):
            clamped.append("the adaptive allowance")
            aimd.base = aimd.base if aimd.base >= 1.0 else 1.0
            aimd.cut_at = aimd.cut_at if aimd.cut_at <= now else now
            aimd.hold_until = aimd.hold_until if aimd.hold_until <= latest else latest
        sent = [t if t <= now else now for t in state.sent]
        if any(not t <= now for t in state.sent) or not state.last_claim <= now:
            clamped.append("request times")
            state.last_claim = state.last_claim if state.last_claim <= now else now
        for token, (at, until) in list(state.claims.items()):
            if not (at <= now and until <= latest):
                clamped.append("a claim in flight")
                at, until = (at if at <= now else now), (until if until <= latest else latest)
                state.claims[token] = (at, until)
            if until <= now:  # never settled (the worker died): counted as made when its hold ran out
                del state.claims[token]
                sent.append(until)
        sent.sort()
        state.sent = sent[bisect.bisect_right(sent, now - self._span) :]
        if clamped:
            log.warning(
                "Rate-limit state file %s held %s further ahead than this worker allows (its clock was set back, or "
                "the file was changed); clamped to at most %.0f s from now.",
                self.path,
                ", ".join(dict.fromkeys(clamped)),
                self._horizon,
            )

    def _corrupt(self) -> ValueError:
        return ValueError(
            f"Rate-limit state file {str(self.path)!r} was not written by this provider (or is damaged). It holds "
            "only request times: delete it and rerun."
        )

    # -- the Limiter interface -----------------------------------------------------------------------------------

    def allowed(self) -> int:
        """Requests this host may start per window now (the ceiling, or less after 429s from other hosts)."""
        with self._state(write=False) as (state, now):
            return self._allowed(state, now)

    def _allowed(self, state: _State, now: float) -> int:
        return state.aimd.allowed(self.limit, self.window_s, now) if self.adaptive else self.limit

    def _try_claim(self, hold_s: float, blocking: bool = True) -> tuple[float, int | None]:
        """Claim a slot if one is free now: ``(0.0, token)``; else ``(seconds until one may be, None)``."""
        with self._state(blocking=blocking) as (state, now):
            allowed = self._allowed(state, now)
            delay = window_delay(state.sent, allowed, self._span, now, state.paused_until, len(state.claims))
            if allowed < self.limit:
                # cut by other hosts' 429s: no bursts, at most the ceiling's pace (see ratelimit.adaptive)
                delay = max(delay, state.last_claim + self._span / self.limit - now)
            if delay > 0:
                return delay, None
            state.last_claim = now
            token = int.from_bytes(os.urandom(8), "little")  # unique across the host's processes, forked or not
            if hold_s > 0:
                state.claims[token] = (now, now + min(hold_s, self._horizon))
            else:
                state.sent.append(now)
            return 0.0, token

    def try_acquire(self) -> float:
        """Claim a slot recorded at once if one is free now (return 0.0), else return the seconds until one may be."""
        return self._try_claim(0.0)[0]

    def claim(self, hold_s: float) -> Slot:
        """Wait for a free slot and claim it
        (:meth:`~airflow_provider_carecycle.hooks.ratelimit.base.Limiter.claim`)."""
        waited = 0.0
        while True:
            delay, token = self._try_claim(hold_s)
            if token is not None:
                return Slot(waited, token)
            delay = bounded_wait(delay, self._horizon)
            self._sleep(delay)
            waited += delay

    async def aclaim(self, hold_s: float) -> Slot:
        """:meth:`claim` on the event loop: the waits are the async sleep, no thread is held."""

        async def attempt() -> tuple[float, int | None]:
            return await self._on_loop(lambda blocking: self._try_claim(hold_s, blocking))

        return await claim_when_free(attempt, lambda: self._horizon, self._async_sleep)

    def settle(self, slot: Slot, blocking: bool = True) -> None:
        """Record the claim's request now (its answer arrived): it holds its slot for one window from here."""
        with self._state(blocking=blocking) as (state, now):
            state.claims.pop(slot.token, None)
            state.sent.append(now)

    async def asettle(self, slot: Slot) -> None:
        """:meth:`settle` from the event loop."""
        await self._on_loop(lambda blocking: self.settle(slot, blocking))

    def acquire(self) -> float:
        """Wait for a free slot and claim it, recorded at once (a request counted when it starts); return the wait."""
        return self.claim(0.0).waited

    def pause(self, seconds: float, blocking: bool = True) -> None:
        """Hold every process of the host back for ``seconds`` (at most ``max_wait_s``: the API said to wait)."""
        with self._state(blocking=blocking) as (state, now):
            state.paused_until = max(state.paused_until, now + bounded_wait(seconds, self._horizon))

    async def apause(self, seconds: float) -> None:
        """:meth:`pause` from the event loop."""
        await self._on_loop(lambda blocking: self.pause(seconds, blocking))

    def on_success(self) -> None:
        """Nothing to record: the allowance recovers with time since the last cut."""

    def on_rate_limited(self, retry_after: float | None, blocking: bool = True) -> None:
        """Cut the host's allowance (adaptive mode), unless this 429 belongs to the last cut's congestion. A
        ``retry_after`` longer than ``max_wait_s`` holds the cut for ``max_wait_s`` only."""
        if self.adaptive:
            hold = None if retry_after is None else bounded_wait(retry_after, self._horizon)
            with self._state(blocking=blocking) as (state, now):
                state.aimd.cut(self.limit, self.window_s, now, hold)

    async def aon_rate_limited(self, retry_after: float | None) -> None:
        """:meth:`on_rate_limited` from the event loop."""
        await self._on_loop(lambda blocking: self.on_rate_limited(retry_after, blocking))


_dirs_used: set[Path] = set()


def host_limiter(
    base_url: str,
    api_key: str,
    requests_per_window: int,
    window_s: float = 60.0,
    *,
    directory: str | None = None,
    adaptive: bool = True,
    max_wait_s: float = DEFAULT_MAX_WAIT_S,
    conn_id: str = "",
) -> HostRateLimiter:
    """The process's host-wide limiter for ``(base_url, api_key, window_s)`` in ``directory``, set to the rate.

    :param base_url: the API's base URL.
    :param api_key: the key or credential identity (only hashed).
    :param requests_per_window: this process's ceiling.
    :param window_s: the window in seconds.
    :param directory: the connection extra ``rate_limit_dir``.
    :param adaptive: with adaptive pacing (AIMD) for other hosts' requests.
    :param max_wait_s: the longest a value read from the state file may hold a caller back.
    :param conn_id: the Airflow connection, named in error messages.
    """
    folder = state_dir(directory, conn_id)
    _dirs_used.add(folder)
    path = state_file(folder, base_url, api_key, window_s)
    key = ("host", base_url.rstrip("/"), key_digest(base_url, api_key), repr(float(window_s)), f"{path}|{adaptive}")
    limiter = registered(
        key,
        lambda: HostRateLimiter(path, requests_per_window, window_s, adaptive=adaptive, max_wait_s=max_wait_s),
    )
    assert isinstance(limiter, HostRateLimiter)
    limiter.set_rate(requests_per_window, max_wait_s)
    return limiter


def forget_state_files(base_url: str) -> None:
    """Delete the state files of ``base_url`` in the folders this process used and the default folder.

    :param base_url: the API's base URL.
    """
    prefix = _url_prefix(base_url)
    default = default_state_dir()
    for folder in {*_dirs_used, *([default] if default.is_dir() else [])}:
        for path in folder.glob(f"{prefix}-*.window"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
