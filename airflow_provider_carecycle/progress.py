"""Progress lines for long runs: done/total, rate per minute and ETA, at most every few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol


class TaskLog(Protocol):
    """What the provider logs through: a :class:`logging.Logger` or an operator's ``self.log`` (a structlog logger
    on Airflow 3). Messages take lazy ``%s`` arguments only."""

    def debug(self, msg: Any, /, *args: Any) -> object: ...

    def info(self, msg: Any, /, *args: Any) -> object: ...

    def warning(self, msg: Any, /, *args: Any) -> object: ...

    def error(self, msg: Any, /, *args: Any) -> object: ...


class Progress:
    """Counts work and logs a progress line now and then.

    :param log: the logger (an operator's ``self.log``).
    :param unit: what is counted, e.g. ``"records"`` or ``"customers"``.
    :param total: the expected total, if known (may be set later).
    :param every_s: the least number of seconds between two lines.
    :param clock: a monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        log: TaskLog,
        unit: str,
        total: int | None = None,
        *,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.unit = unit
        self.total = total
        self.every_s = every_s
        self.done = 0
        self._clock = clock
        self.started = clock()
        self._last = self.started

    @property
    def elapsed_s(self) -> float:
        """Seconds since the start."""
        return self._clock() - self.started

    @property
    def per_minute(self) -> float:
        """Units done per minute so far."""
        elapsed = self.elapsed_s
        return self.done * 60.0 / elapsed if elapsed > 0 else 0.0

    def add(self, n: int) -> None:
        """Count ``n`` more units done and log a line if ``every_s`` has passed."""
        self.done += n
        now = self._clock()
        if now - self._last >= self.every_s:
            self._last = now
            self.log.info("%s", self.line())

    def line(self) -> str:
        """The progress line: ``1,200 of 5,000 records (24%), 2,400/min, ETA 1.6 min``."""
        rate = self.per_minute
        if self.total:
            eta = f", ETA {(self.total - self.done) / rate:.1f} min" if rate > 0 and self.done < self.total else ""
            return (
                f"{self.done:,} of {self.total:,} {self.unit} ({100 * self.done / self.total:.0f}%), "
                f"{rate:,.0f}/min{eta}"
            )
        return f"{self.done:,} {self.unit}, {rate:,.0f}/min"
