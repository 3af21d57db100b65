"""Test-wide hooks: run ``async def`` tests on uvloop with a hard time bound.

Every coroutine test runs in a fresh event loop and is cancelled after WSGATE_TEST_TIMEOUT
seconds (default 60), so a hung test fails instead of hanging CI.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from typing import Any

import pytest
import uvloop

TEST_TIMEOUT = float(os.environ.get("WSGATE_TEST_TIMEOUT", "60"))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs: dict[str, Any] = {name: pyfuncitem.funcargs[name] for name in names}

    async def bounded() -> None:
        async with asyncio.timeout(TEST_TIMEOUT):
            await func(**kwargs)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(bounded())
    return True
