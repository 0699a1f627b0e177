"""Campaign dialer simulation of the careCycle emulator.

Each tick, every ``active`` campaign dials up to :data:`CALLS_PER_TICK` of its customers whose campaign status is
``pending``, ``awaiting_call`` or ``in_progress`` (fewest attempts first, then oldest customer). Each dial creates a
call row and moves the customer: connected -> ``completed``, refused -> ``failed``, no answer -> ``in_progress``, or
``exceeded_max_calls`` once the campaign's ``maxAttempts`` is reached. A customer who carries ``doNotCall`` is never
dialed: the tick moves them to ``skipped`` instead; a call that ends ``"Do Not Call"`` sets the customer's
``doNotCall`` (:meth:`~carecycle_emulator.carecycle.store.Store.add_call`). Outcomes come from an RNG seeded with the
emulator's seed, so manual ``tick()`` sequences are deterministic. Campaigns in any other status do not dial.

``tick(at=...)`` places the tick's calls on a given day and time instead of now (one millisecond apart, in dialing
order), so tests can build a call history over several days. A call, once placed, never changes.
"""

from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta, timezone

from carecycle_emulator.carecycle.seed import FAILURE, NO_ANSWER, SUCCESS, rng_uuid
from carecycle_emulator.carecycle.store import Store, iso, now_iso

CALLS_PER_TICK = 3
P_COMPLETED = 0.35
P_FAILED = 0.10


class Dialer:
    def __init__(self, store: Store, seed: int = 0) -> None:
        self.store = store
        self.speed = 0.0
        self._rng = random.Random(f"dialer:{seed}")
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def reseed(self, seed: int) -> None:
        with self.store.lock:
            self._rng = random.Random(f"dialer:{seed}")

    def tick(self, steps: int = 1, at: datetime | None = None) -> int:
        """Advance ``steps`` ticks; return the number of calls placed.

        :param at: when the calls are placed (aware, or naive meaning UTC), each one millisecond after the one
            before; default: now.
        """
        placed = 0
        for _ in range(int(steps)):
            with self.store.lock:
                for campaign in self.store.active_campaigns():
                    self.store.skip_do_not_call(campaign["id"], now_iso())
                    for member in self.store.dialable_members(campaign["id"], CALLS_PER_TICK):
                        when = None if at is None else iso(_utc(at) + timedelta(milliseconds=placed))
                        self._dial(campaign, member, when)
                        placed += 1
        return placed

    def _dial(self, campaign, member, when: str | None = None) -> None:
        rng = self._rng
        attempts = member["total_calls"] + 1
        r = rng.random()
        if r < P_COMPLETED:
            status, disposition, duration = "completed", rng.choice(SUCCESS), rng.randint(60_000, 900_000)
        elif r < P_COMPLETED + P_FAILED:
            status, disposition, duration = "failed", rng.choice(FAILURE), rng.randint(10_000, 120_000)
        else:
            disposition, duration = rng.choice(NO_ANSWER), rng.randint(3_000, 35_000)
            status = "exceeded_max_calls" if attempts >= campaign["max_attempts"] else "in_progress"
        ts = when or now_iso()
        self.store.add_call(
            call_id=rng_uuid(rng),
            customer_id=member["customer_id"],
            campaign_id=campaign["id"],
            created_at=ts,
            disposition=disposition,
            duration_ms=duration,
            summary=f"{disposition} on attempt {attempts}",
            success="true" if status == "completed" else "false",
        )
        self.store.set_member_status(member["customer_id"], campaign["id"], status, 1, ts)

    # -- background dialing ---------------------------------------------------------------------------------

    def set_speed(self, speed: float) -> None:
        """``speed`` ticks per second in a background thread; 0 stops it."""
        with self._lock:
            self.speed = max(0.0, float(speed))
            if self.speed > 0 and self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="carecycle-emulator-dialer", daemon=True)
                self._thread.start()
            elif self.speed == 0 and self._thread is not None:
                self._stop_thread()

    def _stop_thread(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def stop(self) -> None:
        with self._lock:
            self._stop_thread()

    def _run(self) -> None:
        while not self._stop.is_set():
            speed = self.speed
            if speed <= 0:
                break
            if self._stop.wait(1.0 / speed):
                break
            try:
                self.tick(1)
            except Exception:  # the store may be mid-reset; try again next tick
                continue


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)
