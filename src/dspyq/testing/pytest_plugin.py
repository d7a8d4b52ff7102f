"""pytest fixtures for dspyq, registered through the ``pytest11`` entry point.

``fake_lm`` gives each test a fresh fake LM server on a free loopback port;
``fake_lm_server`` is one server shared by the session (reset between uses is up to
the test: call ``server.reset()``). Imports of the server stay inside the fixtures so
that merely loading the plugin costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from dspyq.testing.fake_lm import FakeLMServer


@pytest.fixture
def fake_lm() -> Iterator[FakeLMServer]:
    """A fake OpenAI/Anthropic-compatible server, started for this test only.

    The process-wide LM cache and noted rate-limit budgets are emptied first: ports
    get reused, and an earlier test's answers or spent budget must not stand in for
    this server's.
    """
    from dspyq.lm.cache import clear_cache
    from dspyq.lm.providers.limits import forget_budgets
    from dspyq.testing.fake_lm import FakeLMServer

    clear_cache()
    forget_budgets()
    with FakeLMServer(port=0) as server:
        yield server


@pytest.fixture(scope="session")
def fake_lm_server() -> Iterator[FakeLMServer]:
    """One fake LM server for the whole session (cheaper; tests must not rely on its state)."""
    from dspyq.testing.fake_lm import FakeLMServer

    with FakeLMServer(port=0) as server:
        yield server
