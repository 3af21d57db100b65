"""Time and size values, after ``ngx_parse_time`` / ``ngx_parse_size`` / ``ngx_parse_offset``
(src/core/ngx_parse.c; nginx-semantics.md §6.3).

Every function returns ``None`` for a value nginx rejects; the caller words the error.
Arithmetic is in integers with nginx's 64-bit limits, so a value nginx refuses as too
large is refused here too.
"""

from __future__ import annotations

__all__ = ["parse_offset", "parse_size", "parse_time"]

MAX = 2**63 - 1  # NGX_MAX_INT_T_VALUE, NGX_MAX_SIZE_T_VALUE, NGX_MAX_OFF_T_VALUE on 64 bits

# Units in the only order nginx accepts them (descending), with their length in seconds.
# A space after a bare number counts as seconds (ngx_parse_time's `case ' '`).
_TIME_UNITS: dict[str, tuple[int, int]] = {
    "y": (0, 365 * 86400),
    "M": (1, 30 * 86400),
    "w": (2, 7 * 86400),
    "d": (3, 86400),
    "h": (4, 3600),
    "m": (5, 60),
    "s": (6, 1),
    " ": (6, 1),
    "ms": (7, 0),
}


def parse_time(text: str, *, seconds: bool = False) -> float | None:
    """Parse ``300s``, ``1m30s``, ``"1m 30s"``, ``1d``, ``500ms`` to float seconds.

    Args:
        text: the directive argument.
        seconds: the directive is second-based (``fail_timeout``): ``ms`` is rejected.
            Millisecond-based directives (``proxy_*_timeout``) reject ``y`` and ``M``.
    """
    # Work in the directive's own unit: milliseconds, or seconds when `seconds`.
    per_second = 1 if seconds else 1000
    total = 0
    step = -1
    i, n = 0, len(text)
    valid = False
    while i < n:
        j = i
        while j < n and text[j].isdigit() and text[j].isascii():
            j += 1
        if j == i:
            return None
        value = int(text[i:j])
        valid = True
        if j == n:  # a bare number ends the value: seconds
            scale = per_second
            i = j
        else:
            unit = "ms" if text.startswith("ms", j) else text[j]
            if unit not in _TIME_UNITS:
                return None
            order, unit_seconds = _TIME_UNITS[unit]
            if order <= step or (seconds and unit == "ms") or (not seconds and unit in "yM"):
                return None
            step = order
            scale = 1 if unit == "ms" else unit_seconds * per_second
            i = j + len(unit)
            while i < n and text[i] == " ":
                i += 1
        if value > MAX // scale:
            return None
        value *= scale
        if total > MAX - value:
            return None
        total += value
    if not valid:
        return None
    return total / per_second


def _parse_scaled(text: str, units: dict[str, int]) -> int | None:
    if not text:
        return None
    scale = units.get(text[-1], 0)
    digits = text[:-1] if scale else text
    if not digits or not digits.isdigit() or not digits.isascii():
        return None
    scale = scale or 1
    value = int(digits)
    if value > MAX // scale:
        return None
    return value * scale


_SIZE = {"k": 1024, "K": 1024, "m": 1024**2, "M": 1024**2}
_OFFSET = {**_SIZE, "g": 1024**3, "G": 1024**3}


def parse_size(text: str) -> int | None:
    """Parse ``10k``, ``1m``, ``4096`` to bytes (``g`` is not a size unit in nginx)."""
    return _parse_scaled(text, _SIZE)


def parse_offset(text: str) -> int | None:
    """Parse an offset (``client_max_body_size``): sizes plus ``g``/``G``."""
    return _parse_scaled(text, _OFFSET)
