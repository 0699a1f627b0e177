"""The host-wide limiter: every process and thread of one host shares a key's budget through a locked state file.

Airflow runs each task instance in a process of its own (LocalExecutor, Celery's prefork workers), and a triggerer
runs triggers in threads; an in-process limiter lets each of them spend the whole key. :class:`HostRateLimiter`
keeps the key's sliding window in a small binary file instead, read and rewritten under an exclusive ``fcntl.flock``
for each request, so every process of the host sees the others' requests, pauses and adaptive allowance.

The file lives in the connection extra ``rate_limit_dir`` (default: ``carecycle-rate-limits-<uid>`` under the
system temp dir, created ``0700``; a default folder owned by someone else or open to others is refused). Its name is
derived from the base URL and a hash of the key, never the key; it holds request times, nothing else. Times are
wall-clock (``time.time``), which every process of a host reads alike, also after a reboot.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import hashlib
import os
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from airflow_provider_carecycle.hooks.rate_limit import (
    check_rate,
    key_digest,
    registered,
    window_delay,
    window_span,
)
from airflow_provider_carecycle.hooks.rate_limit_adaptive import Aimd

#: magic, paused_until, the AIMD state (base, cut_at, hold_until), number of request times that follow
_HEADER = struct.Struct("<8sddddI")
_MAGIC = b"ccrl\x00\x00\x00\x01"
#: request times further than this in the future (the clock was set back) are dropped
_FUTURE_TOLERANCE_S = 1.0


def default_state_dir() -> Path:
    """``<system temp dir>/carecycle-rate-limits-<uid>``: one per OS user, so users never share (or spoof) a file."""
    return Path(tempfile.gettempdir()) / f"carecycle-rate-limits-{os.getuid()}"


def state_dir(directory: str | None, conn_id: str = "") -> Path:
    """The folder for host-wide state: ``directory`` or the default, created ``0700`` when missing.

    :param directory: the connection extra ``rate_limit_dir`` (``None``/empty: :func:`default_state_dir`).
    :param conn_id: the Airflow connection, named in error messages.
    :raises ValueError: when it is not a folder this user can use (or the default one is not private).
    """
    if directory is not None and not isinstance(directory, str):
        raise ValueError(f"Airflow connection {conn_id!r}: extra 'rate_limit_dir' must be a folder path.")
    configured = bool(directory and directory.strip())
    path = Path(directory.strip()).expanduser() if configured and directory else default_state_dir()
    what = f"Airflow connection {conn_id!r}: rate-limit folder {str(path)!r}"
    try:
        with contextlib.suppress(FileExistsError):  # a file of that name: refused below
            path.mkdir(mode=0o700, parents=configured, exist_ok=True)
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
    return directory / f"{_url_prefix(base_url)}-{digest}-{round(window_s * 1000)}ms.window"


@dataclass
class _State:
    paused_until: float = 0.0
    aimd: Aimd = field(default_factory=Aimd)
    sent: array.array = field(default_factory=lambda: array.array("d"))


class HostRateLimiter:
    """At most ``requests_per_window`` request starts in any ``window_s`` seconds across every process of the host.

    :param path: the state file (:func:`state_file`); created ``0600`` when missing.
    :param requests_per_window: this process's ceiling (the most recent hook's setting wins, as in-process).
    :param window_s: the window length in seconds (60 for careCycle).
    :param adaptive: adapt to 429s caused by other hosts (AIMD, see
        :mod:`~airflow_provider_carecycle.hooks.rate_limit_adaptive`); the allowance is shared by the host, and
        while it is cut the host's requests start no faster than ``requests_per_window`` evenly spread would.
    :param clock: a wall clock every process of the host shares (injectable for tests).
    :param sleep: the sleep function (injectable for tests).
    """

    def __init__(
        self,
        path: Path,
        requests_per_window: int,
        window_s: float = 60.0,
        *,
        adaptive: bool = True,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = Path(path)
        self.window_s = window_s
        self.adaptive = adaptive
        self._span = window_span(window_s)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.set_rate(requests_per_window)

    def set_rate(self, requests_per_window: int) -> None:
        """Change this process's ceiling."""
        self.limit = check_rate(requests_per_window)

    # -- the shared state ----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _state(self, *, write: bool = True) -> Iterator[tuple[_State, float]]:
        """Lock the file (threads by a lock, processes by ``flock`` on a fresh descriptor: fork-safe), read it,
        yield it with the time, and write it back."""
        if self._pid != os.getpid():  # a forked child (Celery prefork): a lock held by a parent thread stays held
            self._lock, self._pid = threading.Lock(), os.getpid()
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                state = self._read(fd)
                now = self._clock()
                sent = state.sent
                keep = [t for t in sent if now - self._span < t <= now + _FUTURE_TOLERANCE_S]
                if len(keep) != len(sent):
                    state.sent = array.array("d", keep)
                yield state, now
                if write:
                    data = (
                        _HEADER.pack(
                            _MAGIC,
                            state.paused_until,
                            state.aimd.base,
                            state.aimd.cut_at,
                            state.aimd.hold_until,
                            len(state.sent),
                        )
                        + state.sent.tobytes()
                    )
                    os.pwrite(fd, data, 0)
                    os.ftruncate(fd, len(data))
            finally:
                os.close(fd)  # releases the flock

    def _read(self, fd: int) -> _State:
        size = os.fstat(fd).st_size
        if size == 0:
            return _State()
        data = os.pread(fd, size, 0)
        if size < _HEADER.size or data[:8] != _MAGIC:
            raise self._corrupt()
        _, paused_until, base, cut_at, hold_until, count = _HEADER.unpack_from(data)
        end = _HEADER.size + 8 * count
        if end > size:
            raise self._corrupt()
        sent = array.array("d")
        sent.frombytes(data[_HEADER.size : end])
        return _State(paused_until, Aimd(base, cut_at, hold_until), sent)

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

    def try_acquire(self) -> float:
        """Claim a slot if one is free now (return 0.0), else return the seconds until one may be."""
        with self._state() as (state, now):
            allowed = self._allowed(state, now)
            delay = window_delay(state.sent, allowed, self._span, now, state.paused_until)
            if allowed < self.limit and state.sent:
                # cut by other hosts' 429s: no bursts, at most the ceiling's pace (see rate_limit_adaptive)
                delay = max(delay, state.sent[-1] + self._span / self.limit - now)
            if delay <= 0:
                state.sent.append(now)
                return 0.0
            return delay

    def acquire(self) -> float:
        """Wait for a free slot and claim it; return the seconds waited."""
        waited = 0.0
        while (delay := self.try_acquire()) > 0:
            self._sleep(delay)
            waited += delay
        return waited

    def pause(self, seconds: float) -> None:
        """Hold every process of the host back for ``seconds`` (the API said to wait)."""
        with self._state() as (state, now):
            state.paused_until = max(state.paused_until, now + seconds)

    def on_success(self) -> None:
        """Nothing to record: the allowance recovers with time since the last cut."""

    def on_rate_limited(self, retry_after: float | None) -> None:
        """Cut the host's allowance (adaptive mode), unless this 429 belongs to the last cut's congestion."""
        if self.adaptive:
            with self._state() as (state, now):
                state.aimd.cut(self.limit, self.window_s, now, retry_after)


_dirs_used: set[Path] = set()


def host_limiter(
    base_url: str,
    api_key: str,
    requests_per_window: int,
    window_s: float = 60.0,
    *,
    directory: str | None = None,
    adaptive: bool = True,
    conn_id: str = "",
) -> HostRateLimiter:
    """The process's host-wide limiter for ``(base_url, api_key, window_s)`` in ``directory``, set to the rate.

    :param base_url: the API's base URL.
    :param api_key: the key or credential identity (only hashed).
    :param requests_per_window: this process's ceiling.
    :param window_s: the window in seconds.
    :param directory: the connection extra ``rate_limit_dir``.
    :param adaptive: with adaptive pacing (AIMD) for other hosts' requests.
    :param conn_id: the Airflow connection, named in error messages.
    """
    folder = state_dir(directory, conn_id)
    _dirs_used.add(folder)
    path = state_file(folder, base_url, api_key, window_s)
    key = ("host", base_url.rstrip("/"), key_digest(base_url, api_key), repr(float(window_s)), f"{path}|{adaptive}")
    limiter = registered(key, lambda: HostRateLimiter(path, requests_per_window, window_s, adaptive=adaptive))
    assert isinstance(limiter, HostRateLimiter)
    limiter.set_rate(requests_per_window)
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
