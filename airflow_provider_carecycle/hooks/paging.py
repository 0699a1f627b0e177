"""Reading a careCycle list page by page while rows are deleted from it (offset paging that notices drift).

careCycle's lists page by offset (``page``/``perPage``). A row deleted from a page already read moves every later row
one place up, so the next page starts one row later and a row that still exists is never read; a row created before
the offset moves them down, so a row is read twice. :class:`DriftSafePages` reads the pages in turn and:

* **drops a row already read** (by its ``id``), so a row moved down is written once;
* **steps back when the list shrank**: when ``itemsTotal`` fell between the previous page's answer and this one's
  (in any answer in between too, so a fall later hidden by rows created meanwhile still counts), rows may have
  moved up past the offset. It reads the pages before it again, newest first, until it meets a row it has
  already read: everything after that row and before the new page is a row that moved past the offset, and comes
  first in the new page. At most :data:`MAX_STEP_BACK_PAGES` pages back; if the rows read then do not line up with
  the rows read before (more rows were deleted than that), it raises :class:`CareCycleListChangedError` instead of
  going on with a gap.

It keeps the ids of the last :data:`MAX_STEP_BACK_PAGES` + 1 pages only, so memory stays flat. What no answer can
show: rows deleted and at least as many created between the same two answers (the total does not fall). Read a list
that does not grow while it is paged (for customers, ``date_field="createdAt"`` with an ``end_date`` in the past) to
rule that out.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from airflow_provider_carecycle.exceptions import CareCycleAPIError

log = logging.getLogger(__name__)

#: how many pages a read steps back, at most, to find the rows that moved past its offset
MAX_STEP_BACK_PAGES = 10


class CareCycleListChangedError(CareCycleAPIError):
    """A list changed under a paged read more than it can make up for: rows may have been skipped.

    Retryable: a task retry reads the list again from its start.
    """

    RETRYABLE = True


@dataclass
class Answer:
    """One page of a list as the API answered it."""

    items: list[dict[str, Any]]
    next_page: int | None
    total: int | None


def _key(item: Any) -> Any:
    """A row's identity: its ``id`` (``None`` when it has none; such a row is never taken for one already read)."""
    value = item.get("id") if isinstance(item, dict) else None
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None


class _RecentRows:
    """The ids of the rows read last (at most ``capacity``), and whether it still holds every row read."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[Any, None] = OrderedDict()
        self.complete = True

    def __contains__(self, key: Any) -> bool:
        return key is not None and key in self._keys

    def add(self, key: Any) -> None:
        if key is None:
            return
        self._keys[key] = None
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
            self.complete = False


class DriftSafePages:
    """The pages of one list, read in turn, each row once, none skipped because rows were deleted (see the module
    docstring).

    Iterating yields ``(page number, rows, total)``: the rows of each page not read before, preceded by any rows that
    moved past the offset since the previous page.

    :param fetch: reads one page (by number) and returns its :class:`Answer`.
    :param per_page: the page size.
    :param where: the list, for messages (``careCycle API GET /v2/customers``).
    """

    def __init__(self, fetch: Callable[[int], Answer], *, per_page: int, where: str) -> None:
        self.fetch = fetch
        self.per_page = per_page
        self.where = where
        self.stepped_back = 0  # pages read again
        self.recovered = 0  # rows that had moved past the offset
        self.dropped = 0  # rows read twice (moved down), written once
        self._total: int | None = None  # the last itemsTotal any answer gave
        self._shrunk: tuple[int, int] | None = None  # a fall of itemsTotal seen since the last page went forward

    def _read(self, page: int) -> Answer:
        """Read one page and note whether ``itemsTotal`` fell since the answer before (forward or stepping back)."""
        answer = self.fetch(page)
        if answer.total is not None:
            if self._total is not None and answer.total < self._total:
                self._shrunk = (self._shrunk or (self._total, 0))[0], answer.total
            self._total = answer.total
        return answer

    def __iter__(self) -> Iterator[tuple[int, list[dict[str, Any]], int | None]]:
        read = _RecentRows((MAX_STEP_BACK_PAGES + 1) * self.per_page)
        page = 1
        while True:
            answer = self._read(page)
            # rows deleted since the page before was read (a fall in any answer since, even one hidden in the end by
            # rows created meanwhile) may have moved rows up past the offset; rows deleted from here on move the next
            # page's, not this one's
            shrunk, self._shrunk = self._shrunk, None
            moved: list[dict[str, Any]] = []
            if page > 1 and shrunk is not None:
                moved = self._moved_past(page, answer, read, shrunk)
            rows = []
            for item in [*moved, *answer.items]:
                if _key(item) in read:
                    self.dropped += 1
                    continue
                read.add(_key(item))
                rows.append(item)
            yield page, rows, self._total
            if not answer.items or not answer.next_page:
                return
            if answer.next_page <= page:
                log.warning("%s page %d: nextPage %d does not advance; stopping.", self.where, page, answer.next_page)
                return
            page = answer.next_page

    def _moved_past(
        self, page: int, answer: Answer, read: _RecentRows, shrunk: tuple[int, int]
    ) -> list[dict[str, Any]]:
        """The rows between the last row read and ``page``'s first row: read the pages before it again, last first,
        until a row already read lines the list up again.

        :raises CareCycleListChangedError: when no row read before turns up within :data:`MAX_STEP_BACK_PAGES`.
        """
        on_page = {_key(item) for item in answer.items} - {None}
        moved: list[dict[str, Any]] = []
        for back in range(page - 1, max(0, page - 1 - MAX_STEP_BACK_PAGES), -1):
            again = self._read(back)
            self.stepped_back += 1
            tail: list[dict[str, Any]] = []
            for item in reversed(again.items):
                if _key(item) in read:
                    moved[:0] = reversed(tail)
                    return self._note(page, moved, on_page, shrunk)
                tail.append(item)
            moved[:0] = reversed(tail)
            if back == 1 and read.complete:  # back at the list's start, and every row read is known
                return self._note(page, moved, on_page, shrunk)
        raise CareCycleListChangedError(
            f"{self.where}: the list changed while it was paged: itemsTotal fell from {shrunk[0]:,} to "
            f"{shrunk[1]:,} before page {page}, so rows were deleted and the rows after them moved up past the "
            f"pages already read; reading up to {MAX_STEP_BACK_PAGES} pages back again did not line the list up. Some "
            "rows may have been skipped, so nothing is written: a task retry reads the list again (best when fewer "
            "rows are being deleted)."
        )

    def _note(
        self, page: int, moved: list[dict[str, Any]], on_page: set[Any], shrunk: tuple[int, int]
    ) -> list[dict[str, Any]]:
        moved = [item for item in moved if _key(item) not in on_page]
        self.recovered += len(moved)
        log.info(
            "%s: itemsTotal fell from %d to %d before page %d (rows deleted meanwhile); %d row(s) that had moved up "
            "past the pages already read were read again.",
            self.where,
            shrunk[0],
            shrunk[1],
            page,
            len(moved),
        )
        return moved
