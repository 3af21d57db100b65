"""Time and size values, after ``ngx_parse_time`` / ``ngx_parse_size`` / ``ngx_parse_offset``
(src/core/ngx_parse.c; nginx-semantics.md §6.3).

Every function returns ``None`` for a value nginx rejects; the caller words the error.
"""

from __future__ import annotations

__all__ = ["parse_offset", "parse_size", "parse_time"]

# Units in the only order nginx accepts them (descending), with their length in seconds.
_TIME_UNITS: dict[str, tuple[int, float]] = {
    "y": (0, 365 * 86400.0),
    "M": (1, 30 * 86400.0),
    "w": (2, 7 * 86400.0),
    "d": (3, 86400.0),
    "h": (4, 3600.0),
    "m": (5, 60.0),
    "s": (6, 1.0),
    "ms": (7, 0.001),
}


def parse_time(text: str, *, seconds: bool = False) -> float | None:
    """Parse ``300s``, ``1m30s``, ``"1m 30s"``, ``1d``, ``500ms`` to float seconds.

    Args:
        text: the directive argument.
        seconds: the directive is second-based (``fail_timeout``): ``ms`` is rejected.
            Millisecond-based directives (``proxy_*_timeout``) reject ``y`` and ``M``.
    """
    total = 0.0
    step = -1
    i, n = 0, len(text)
    valid = False
    while i < n:
        j = i
        while j < n and text[j].isdigit():
            j += 1
        if j == i:
            return None
        value = int(text[i:j])
        valid = True
        if j == n:  # a bare number: seconds, only as the last component
            return total + value
        unit = "ms" if text.startswith("ms", j) else text[j]
        if unit not in _TIME_UNITS:
            return None
        order, scale = _TIME_UNITS[unit]
        if order <= step or (seconds and unit == "ms") or (not seconds and unit in "yM"):
            return None
        step = order
        total += value * scale
        i = j + len(unit)
        while i < n and text[i] == " ":
            i += 1
    return total if valid else None


def _parse_scaled(text: str, units: dict[str, int]) -> int | None:
    if not text:
        return None
    scale = units.get(text[-1], 0)
    digits = text[:-1] if scale else text
    if not digits or not digits.isdigit() or not digits.isascii():
        return None
    return int(digits) * (scale or 1)


_SIZE = {"k": 1024, "K": 1024, "m": 1024**2, "M": 1024**2}
_OFFSET = {**_SIZE, "g": 1024**3, "G": 1024**3}


def parse_size(text: str) -> int | None:
    """Parse ``10k``, ``1m``, ``4096`` to bytes (``g`` is not a size unit in nginx)."""
    return _parse_scaled(text, _SIZE)


def parse_offset(text: str) -> int | None:
    """Parse an offset (``client_max_body_size``): sizes plus ``g``/``G``."""
    return _parse_scaled(text, _OFFSET)
