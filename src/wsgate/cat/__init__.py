"""``wsgate cat``: a wscat-compatible WebSocket client (connect mode)."""

from __future__ import annotations

from wsgate.cat.client import CatError, CatOptions, cat, normalize_url, options_from_args
from wsgate.cat.terminal import Terminal, escape_controls

__all__ = [
    "CatError",
    "CatOptions",
    "Terminal",
    "cat",
    "escape_controls",
    "normalize_url",
    "options_from_args",
]
