"""Test support: a fake OpenAI/Anthropic-compatible LM server and pytest fixtures.

``FakeLMServer`` is imported lazily so that loading the pytest plugin (which every
pytest run does, through the ``pytest11`` entry point) does not pull in uvicorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dspyq.testing.fake_lm import FakeLMServer, serve

__all__ = ["FakeLMServer", "serve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from dspyq.testing import fake_lm

        return getattr(fake_lm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
