"""``wsgate cat``: a wscat-compatible WebSocket client (connect and listen modes).

Modules: :mod:`~wsgate.cat.options` (what was asked), :mod:`~wsgate.cat.connector` (opening a
connection as ws does), :mod:`~wsgate.cat.session` (one connection), :mod:`~wsgate.cat.client`
(connect mode and the entry point), :mod:`~wsgate.cat.listen` (listen mode),
:mod:`~wsgate.cat.terminal` and :mod:`~wsgate.cat.editor` (output and line editing as wscat and
node's readline do them), :mod:`~wsgate.cat.input` (stdin), :mod:`~wsgate.cat.display`
(message formatting).
"""

from __future__ import annotations

from wsgate.cat.client import cat
from wsgate.cat.options import CatError, CatOptions, normalize_url, options_from_args
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
