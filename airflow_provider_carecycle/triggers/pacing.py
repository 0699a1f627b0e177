"""Fair turns for many triggers polling on one API key in one triggerer.

A triggerer may carry hundreds of deferred stats sensors on one careCycle key, far more than the key's budget allows
per poll interval (60 requests a minute: 500 sensors polling every minute would need 500). Left alone, every waiting
poll would compute the same wait from the limiter, wake at the same moment and race for the one free slot: some
sensors would win again and again while others starve.

:class:`KeyPacer` gives the turns instead: one pacer per key and event loop; each attempt of each trigger's request
waits for its turn in arrival order (``asyncio.Lock`` hands its turns out first come, first served), and the turns are
spaced one rate-limit slot apart (the window, with its guard, over the key's limit). A trigger that has polled sleeps
its poll interval and queues again behind the others, so polls go round-robin: with ``N`` sensors on a key of ``L``
requests per window ``W``, each sensor polls about every ``max(poll interval, N x W / L)`` seconds, its longest gap
close to that even share. The waiting is on the event loop: no thread is held. When the sensors outnumber what the
budget allows per poll interval, the pacer says so in **one** INFO line (and once more when that is over), not at
every poll: at the first turn after the number of sensors held still for one poll interval (a triggerer loads its
triggers a few at a time; the line gives the number they settled at).

The limiter still has the last word (a worker's requests on the same key, a 429's pause): the pacer only orders the
triggers' claims and spaces them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from airflow_provider_carecycle.hooks.ratelimit.base import (
    DEFAULT_ASYNC_SLEEP,
    AsyncLimiter,
    AsyncSleep,
    Slot,
    window_span,
)

log = logging.getLogger(__name__)


class KeyPacer:
    """The turns of every trigger of one event loop on one key.

    :param limiter: the key's limiter (its ``limit`` and ``window_s`` set the spacing).
    :param clock: a monotonic clock (injectable for tests).
    :param sleep: the async sleep (injectable for tests).
    """

    def __init__(
        self, limiter: AsyncLimiter, *, clock: Callable[[], float] = time.monotonic, sleep: AsyncSleep | None = None
    ) -> None:
        self.limiter = limiter
        self._clock = clock
        self._sleep = sleep or DEFAULT_ASYNC_SLEEP
        self._turns = asyncio.Lock()  # first come, first served; bound to the loop at its first use
        self._next_turn = -math.inf
        self._members: dict[int, float] = {}
        self._stretched = False  # whether the line saying so was logged
        self._changed_at = -math.inf

    @property
    def spacing(self) -> float:
        """Seconds between two turns: one rate-limit slot (the window with its guard, over the limit)."""
        return window_span(self.limiter.window_s) / self.limiter.limit

    def cycle(self) -> float:
        """Seconds for every member to have one turn: the even share of each sensor."""
        return len(self._members) * self.spacing

    def interval(self, poll_interval: float) -> float:
        """How often a member asking for ``poll_interval`` actually polls: the budget stretches it to the cycle.

        :param poll_interval: the member's own interval.
        """
        return max(poll_interval, self.cycle())

    def join(self, member: object, poll_interval: float) -> None:
        """Count ``member`` (a trigger) among the key's pollers.

        :param member: the trigger.
        :param poll_interval: its own poll interval.
        """
        if id(member) not in self._members:
            self._changed_at = self._clock()
        self._members[id(member)] = poll_interval

    def leave(self, member: object) -> None:
        """``member`` stopped polling (it fired, failed or was cancelled).

        :param member: the trigger.
        """
        if self._members.pop(id(member), None) is not None:
            self._changed_at = self._clock()
            if self._stretched and not self.cycle() > min(self._members.values(), default=math.inf):
                self._stretched = False
                log.info(
                    "careCycle: %d deferred sensors on one API key fit its budget again: each polls at its own "
                    "interval.",
                    len(self._members),
                )

    def _say_if_stretched(self, now: float) -> None:
        """One INFO line once the budget stretches the members' intervals and their number held still for one poll
        interval."""
        asked = min(self._members.values(), default=math.inf)
        if not self._stretched and self.cycle() > asked and now - self._changed_at >= asked:
            self._stretched = True
            log.info(
                "careCycle: %d deferred sensors poll one API key from this triggerer; its budget (%d requests per "
                "%g s) allows each one poll about every %.1f s, so their poll intervals (%g s asked) are stretched "
                "to that, in turn.",
                len(self._members),
                self.limiter.limit,
                self.limiter.window_s,
                self.cycle(),
                asked,
            )

    async def claim(self, hold_s: float) -> Slot:
        """Wait for this caller's turn (first come, first served, one slot's spacing apart), then for the limiter.

        :param hold_s: the claim's hold (see :meth:`~airflow_provider_carecycle.hooks.ratelimit.base.Limiter.claim`).
        """
        async with self._turns:
            self._say_if_stretched(self._clock())
            wait = self._next_turn - self._clock()
            if wait > 0:
                await self._sleep(wait)
            slot = await self.limiter.aclaim(hold_s)
            self._next_turn = self._clock() + self.spacing
            return Slot(slot.waited + max(0.0, wait), slot)


class PacedLimiter:
    """A key's limiter whose async claims take their turn at the key's :class:`KeyPacer` first; everything else is
    the limiter's own (the same budget).

    :param pacer: the key's pacer on this loop.
    """

    def __init__(self, pacer: KeyPacer) -> None:
        self.pacer = pacer
        self.limiter = pacer.limiter
        self.limit = pacer.limiter.limit
        self.window_s = pacer.limiter.window_s

    def claim(self, hold_s: float) -> Slot:
        slot = self.limiter.claim(hold_s)
        return Slot(slot.waited, slot)

    def settle(self, slot: Slot) -> None:
        self.limiter.settle(slot.token)

    def pause(self, seconds: float) -> None:
        self.limiter.pause(seconds)

    def on_success(self) -> None:
        self.limiter.on_success()

    def on_rate_limited(self, retry_after: float | None) -> None:
        self.limiter.on_rate_limited(retry_after)

    async def aclaim(self, hold_s: float) -> Slot:
        return await self.pacer.claim(hold_s)

    async def asettle(self, slot: Slot) -> None:
        await self.limiter.asettle(slot.token)

    async def apause(self, seconds: float) -> None:
        await self.limiter.apause(seconds)

    async def aon_rate_limited(self, retry_after: float | None) -> None:
        await self.limiter.aon_rate_limited(retry_after)


#: each event loop's pacers, one per limiter (the process has one limiter per key, window and backend)
_pacers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, KeyPacer]] = weakref.WeakKeyDictionary()
_pacers_lock = threading.Lock()


def pacer_for(limiter: AsyncLimiter, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> KeyPacer:
    """The pacer of ``limiter``'s key on ``loop`` (made the first time). Callable from the trigger's preparing thread,
    hence the loop given and the lock.

    :param limiter: the key's limiter.
    :param loop: the triggerer's event loop.
    :param kwargs: for :class:`KeyPacer` (tests).
    """
    with _pacers_lock:
        per_loop = _pacers.setdefault(loop, {})
        pacer = per_loop.get(id(limiter))
        if pacer is None or pacer.limiter is not limiter:
            pacer = per_loop[id(limiter)] = KeyPacer(limiter, **kwargs)
        return pacer
