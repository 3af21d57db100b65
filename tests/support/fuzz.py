"""What the differential fuzz tests against nginx share: comparing outcomes case by case,
and holding the differences to the rows of docs/behavior.md.

Each fuzz test (requests, upstream responses, configuration files) runs its cases through
nginx and wsgate, and classifies every difference with its own ``documented`` rule, which
names the docs/behavior.md row that explains it (or ``None``). :func:`differences` pairs
the outcomes; :func:`assert_rows_documented_and_used` and :func:`assert_all_documented`
are the two checks every such test makes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

__all__ = [
    "BEHAVIOR",
    "Row",
    "assert_all_documented",
    "assert_rows_documented_and_used",
    "differences",
    "shorten",
]

BEHAVIOR = Path(__file__).parents[2] / "docs" / "behavior.md"

C = TypeVar("C")
O = TypeVar("O")  # noqa: E741 (an outcome)


@dataclass(frozen=True)  # no slots: Row[C, O](...) of a frozen slotted one fails in 3.11
class Row(Generic[C, O]):
    """One case whose outcomes differ."""

    case: C
    nginx: O
    wsgate: O
    reason: str | None  # the documented difference, None if undocumented


def differences(
    cases: Iterable[C],
    key: Callable[[C], str],
    nginx: Mapping[str, O],
    wsgate: Mapping[str, O],
    documented: Callable[[C, O, O], str | None],
) -> list[Row[C, O]]:
    """The cases whose outcomes differ, each with the row that explains it (if any)."""
    rows = []
    for case in cases:
        ng, ws = nginx[key(case)], wsgate[key(case)]
        if ng != ws:
            rows.append(Row(case, ng, ws, documented(case, ng, ws)))
    return rows


def shorten(value: bytes | str, limit: int = 300) -> str:
    """``repr(value)``, cut at ``limit`` characters with the value's length after it."""
    text = repr(value)
    if len(text) <= limit:
        return text
    unit = "bytes" if isinstance(value, bytes) else "chars"
    return text[:limit] + f"...({len(value)} {unit})"


def assert_rows_documented_and_used(rows: Iterable[str], found: Sequence[Row[C, O]]) -> None:
    """Each row a classifier cites is in docs/behavior.md and still explains a case (a row
    that explains nothing any more is to be removed, with its rule)."""
    docs = BEHAVIOR.read_text(encoding="utf-8")
    used = Counter(r.reason for r in found)
    for row in rows:
        assert row in docs, f"docs/behavior.md has no row {row!r}"
        assert used[row] > 0, f"no case differs as {row!r} says: {dict(used)}"


def assert_all_documented(
    cases: int, found: Sequence[Row[C, O]], table: Callable[[Sequence[Row[C, O]]], str]
) -> None:
    """No difference lacks a documented row; the failure shows the others as ``table``."""
    undocumented = [r for r in found if r.reason is None]
    counts = Counter(r.reason for r in found)
    summary = f"{cases} cases, {len(found)} differ: {dict(counts)}"
    assert not undocumented, f"{summary}\n{table(undocumented)}"
