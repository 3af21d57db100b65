"""``wsgate.conf.units``: ``ngx_parse_time`` / ``ngx_parse_size`` / ``ngx_parse_offset``
(nginx-semantics.md section 6.3).

Accept/reject of every row was checked with ``nginx -t`` 1.22.1: time values through
``proxy_read_timeout`` (millisecond-based) and ``server ... fail_timeout=`` (second-based),
sizes through ``proxy_buffer_size``, offsets through ``client_max_body_size``. The values
of accepted rows follow ``src/core/ngx_parse.c``.
"""

from __future__ import annotations

import pytest

from wsgate.conf.units import parse_offset, parse_size, parse_time

DAY = 86400.0

# (text, seconds) accepted by both kinds of directive
TIME_BOTH: list[tuple[str, float]] = [
    ("0", 0.0),
    ("0s", 0.0),
    ("30", 30.0),
    ("30s", 30.0),
    ("1m", 60.0),
    ("2h", 7200.0),
    ("1d", DAY),
    ("2w", 14 * DAY),
    ("1h30m", 5400.0),
    ("1h 30m", 5400.0),
    ("1h  30m", 5400.0),
    ("1m 30s", 90.0),
    ("1m ", 60.0),
    ("1m 30", 90.0),  # a bare number is seconds, as the last component
    ("5s30", 35.0),
    ("1h1", 3601.0),
    ("1d2h3m4s", DAY + 2 * 3600 + 3 * 60 + 4),
    ("300s", 300.0),
    # a bare number followed by a space is seconds too (ngx_parse_time's case ' ')
    ("10 ", 10.0),
    ("10  ", 10.0),
    ("1m 30 ", 90.0),
    ("1 2", 3.0),
]

# accepted only by millisecond-based directives (proxy_*_timeout, send_timeout)
TIME_MS_ONLY: list[tuple[str, float]] = [
    ("500ms", 0.5),
    ("1ms", 0.001),
    ("1s500ms", 1.5),
    ("1m500ms", 60.5),
    ("9223372036854775s", 9223372036854775.0),
]

# accepted only by second-based directives (fail_timeout)
TIME_SEC_ONLY: list[tuple[str, float]] = [
    ("1y", 365 * DAY),
    ("1M", 30 * DAY),
    ("1y1M1w1d1h1m1s", 365 * DAY + 30 * DAY + 7 * DAY + DAY + 3600 + 60 + 1),
    ("9223372036854775807", 9223372036854775807.0),
]

# rejected by both
TIME_BAD: list[str] = [
    "",
    "s",
    "ms",
    "-1",
    "-1s",
    "1.5s",
    "10x",
    "1S",
    "1H",
    "30m1h",  # ascending
    "1s1m",
    "1d1d",  # repeated
    "1m1m",
    "10ms5s",
    "1 30s",  # a unit after "N "
    "1 s",
    "1s 5 ",
    "99999999999999999999",  # beyond nginx's 64-bit range
    "9223372036854775808",
]

TIME_MS_BAD = ["1y", "1M", "1y1M1w1d1h1m1s", "9223372036854776s", "9223372036854775807"]
TIME_SEC_BAD = ["500ms", "10ms", "1ms", "1s500ms", "1m500ms"]


def _ids(rows: list[tuple[str, float]]) -> list[str]:
    return [repr(r[0]) for r in rows]


@pytest.mark.parametrize(
    ("text", "expected"), TIME_BOTH + TIME_MS_ONLY, ids=_ids(TIME_BOTH + TIME_MS_ONLY)
)
def test_time_msec_based(text: str, expected: float) -> None:
    assert parse_time(text) == pytest.approx(expected, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize(
    ("text", "expected"), TIME_BOTH + TIME_SEC_ONLY, ids=_ids(TIME_BOTH + TIME_SEC_ONLY)
)
def test_time_sec_based(text: str, expected: float) -> None:
    assert parse_time(text, seconds=True) == pytest.approx(expected, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize(
    "text", TIME_BAD + TIME_MS_BAD, ids=[repr(t) for t in TIME_BAD + TIME_MS_BAD]
)
def test_time_msec_based_rejects(text: str) -> None:
    assert parse_time(text) is None


@pytest.mark.parametrize(
    "text", TIME_BAD + TIME_SEC_BAD, ids=[repr(t) for t in TIME_BAD + TIME_SEC_BAD]
)
def test_time_sec_based_rejects(text: str) -> None:
    assert parse_time(text, seconds=True) is None


K, M, G = 1024, 1024**2, 1024**3

SIZE_GOOD: list[tuple[str, int]] = [
    ("0", 0),
    ("10", 10),
    ("4096", 4096),
    ("10k", 10 * K),
    ("10K", 10 * K),
    ("1m", M),
    ("1M", M),
    ("16k", 16 * K),
    ("9223372036854775807", 2**63 - 1),
    ("8796093022207k", 8796093022207 * K),
]

SIZE_BAD: list[str] = [
    "",
    "k",
    "m",
    "-1",
    "-1k",
    "1.5k",
    "10 k",
    " 10",
    "10kb",
    "1mk",
    "10x",
    "0x10",
    "9223372036854775808",  # beyond nginx's 64-bit range
]

OFFSET_ONLY: list[tuple[str, int]] = [
    ("1g", G),
    ("1G", G),
    ("2g", 2 * G),
    ("8589934591g", 8589934591 * G),
]

OFFSET_BAD = ["g", "1gb", "8589934592g", "1t"]


@pytest.mark.parametrize(("text", "expected"), SIZE_GOOD, ids=_ids(SIZE_GOOD))
def test_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", [*SIZE_BAD, "1g", "1G"], ids=repr)
def test_size_rejects(text: str) -> None:
    assert parse_size(text) is None


@pytest.mark.parametrize(
    ("text", "expected"), SIZE_GOOD + OFFSET_ONLY, ids=_ids(SIZE_GOOD + OFFSET_ONLY)
)
def test_offset(text: str, expected: int) -> None:
    assert parse_offset(text) == expected


@pytest.mark.parametrize("text", SIZE_BAD + OFFSET_BAD, ids=repr)
def test_offset_rejects(text: str) -> None:
    assert parse_offset(text) is None
