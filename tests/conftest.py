"""Shared test fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from checks.resources import close_all


@pytest.fixture(autouse=True)
async def _close_shared_check_resources() -> AsyncIterator[None]:
    """Close the loop's shared probe resources (HTTP session, SIP socket …) after each test.

    Probes create them lazily per event loop; a test that probes without a daemon would
    otherwise leave them for the garbage collector, which warns (an error here).
    """
    yield
    await close_all()
