"""docs/directives.md is generated from the directive table and must be current."""

from __future__ import annotations

from tests.support.procs import REPO
from wsgate.conf.table import render_reference


def test_directive_reference_is_current() -> None:
    current = (REPO / "docs" / "directives.md").read_text(encoding="utf-8")
    assert current == render_reference(), (
        "docs/directives.md is stale: run `python -m wsgate.conf.table > docs/directives.md`"
    )
