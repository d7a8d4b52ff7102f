"""An HTTP provider that reads the rate-limit headers and waits out a spent budget.

Every JSON answer's headers are read (:mod:`dspyq.lm.providers.limits`): the request
id and budget land on the :class:`LMResponse` (``rate_limit``, shown in the LM's
history), and a budget at 0 makes the next request through this provider, first
attempt or retry, wait for its reset rather than fire into a certain 429.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator

import httpx

from dspyq.lm.providers.http import HTTPProvider
from dspyq.lm.providers.limits import budget_wait, note_budget, read_rate_limits
from dspyq.lm.request import LMChunk, LMRequest, LMResponse

logger = logging.getLogger("dspyq.lm.providers")


class PacedHTTPProvider(HTTPProvider):
    """See the module docstring; the OpenAI and Anthropic providers build on it."""

    def _budget_wait(self) -> float:
        wait = budget_wait(self.config)
        if wait > 0:
            logger.info(
                "%s's rate-limit budget is spent; waiting %.2fs for its reset",
                self.config.name,
                wait,
            )
        return wait

    def _read_json(self, response: httpx.Response, text: str, request: LMRequest) -> LMResponse:
        # A plain dict: a dozen lookups on httpx.Headers each rescan its list.
        limits = read_rate_limits(dict(response.headers.items()))
        note_budget(self.config, limits)
        parsed = super()._read_json(response, text, request)
        if limits.empty:
            return parsed
        return parsed.model_copy(update={"rate_limit": limits.as_dict()})

    def post(self, request: LMRequest) -> LMResponse:
        wait = self._budget_wait()
        if wait:
            time.sleep(wait)
        return super().post(request)

    async def apost(self, request: LMRequest) -> LMResponse:
        wait = self._budget_wait()
        if wait:
            await asyncio.sleep(wait)
        return await super().apost(request)

    def stream(self, request: LMRequest) -> Iterator[LMChunk]:
        wait = self._budget_wait()
        if wait:
            time.sleep(wait)
        yield from super().stream(request)

    async def astream(self, request: LMRequest) -> AsyncIterator[LMChunk]:
        wait = self._budget_wait()
        if wait:
            await asyncio.sleep(wait)
        async for chunk in super().astream(request):
            yield chunk
