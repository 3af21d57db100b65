"""Connection and request counters shared by all workers (``ngx_http_stub_status_module``).

The master maps one anonymous shared memory table before it forks; each worker writes only
its own slot (so no locks: one writer per 8-byte word), and ``stub_status`` sums every
slot. Totals (accepts, handled, requests) survive reloads because a slot is reused by the
next worker that gets it; gauges (active, reading, writing) are zeroed by the master when
the worker that owned the slot is gone. In one-process mode the table has one slot.
"""

from __future__ import annotations

import mmap

__all__ = ["SLOT_FIELDS", "Stats", "StatsTable"]

SLOT_FIELDS = ("accepts", "handled", "requests", "active", "reading", "writing")
_ACCEPTS, _HANDLED, _REQUESTS, _ACTIVE, _READING, _WRITING = range(len(SLOT_FIELDS))
_WIDTH = len(SLOT_FIELDS)


class StatsTable:
    """The shared table: ``slots`` rows of counters in memory that forked children share."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._map = mmap.mmap(-1, slots * _WIDTH * 8)
        self.words = memoryview(self._map).cast("q")

    def zero_gauges(self, slot: int) -> None:
        """The worker on ``slot`` is gone: its open connections are not open any more."""
        base = slot * _WIDTH
        for field in (_ACTIVE, _READING, _WRITING):
            self.words[base + field] = 0

    def totals(self) -> list[int]:
        """The sum of every slot, in :data:`SLOT_FIELDS` order."""
        sums = [0] * _WIDTH
        words = self.words
        for slot in range(self.slots):
            base = slot * _WIDTH
            for field in range(_WIDTH):
                sums[field] += words[base + field]
        return sums


class Stats:
    """One worker's view: it writes its slot and reads the sums."""

    __slots__ = ("base", "table", "words")

    def __init__(self, table: StatsTable | None = None, slot: int = 0) -> None:
        self.table = table if table is not None else StatsTable(1)
        self.words = self.table.words
        self.base = slot * _WIDTH

    def add(self, field: int, n: int = 1) -> None:
        """Add ``n`` to one of this worker's counters."""
        self.words[self.base + field] += n

    def accepted(self, handled: bool) -> None:
        """A client connection was accepted (and handled, unless refused at once)."""
        self.words[self.base + _ACCEPTS] += 1
        if handled:
            self.words[self.base + _HANDLED] += 1
            self.words[self.base + _ACTIVE] += 1

    def render(self) -> bytes:
        """The body nginx's ``stub_status`` sends, with every worker's numbers summed."""
        accepts, handled, requests, active, reading, writing = self.table.totals()
        waiting = max(active - reading - writing, 0)
        return (
            f"Active connections: {active} \n"
            "server accepts handled requests\n"
            f" {accepts} {handled} {requests} \n"
            f"Reading: {reading} Writing: {writing} Waiting: {waiting} \n"
        ).encode("ascii")


ACTIVE, READING, WRITING, REQUESTS = _ACTIVE, _READING, _WRITING, _REQUESTS
