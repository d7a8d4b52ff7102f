"""Provider failures seen through the queue: the error ``Job.result()`` raises is of the
same DSPy-named class (``dspyq.LMServerError`` ...) as in-process, with its fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import dspyq
from dspyq.testing.cluster import make_cluster

pytestmark = pytest.mark.integration

CASES: list[tuple[dict[str, Any], type[BaseException], int]] = [
    ({"status": 503}, dspyq.LMServerError, 503),
    ({"status": 408}, dspyq.LMTimeoutError, 408),
    ({"status": 404}, dspyq.LMUnsupportedModelError, 404),
    ({"status": 401}, dspyq.LMAuthError, 401),
    ({"status": 402}, dspyq.LMBillingError, 402),
    ({"kind": "context_length"}, dspyq.ContextWindowExceededError, 400),
]


def test_a_job_fails_with_the_same_dspy_named_error(tmp_path: Path, sqlite_url: str) -> None:
    cluster, server = make_cluster(
        tmp_path,
        sqlite_url,
        latency=0.0,
        DSPYQ_PROVIDERS__OPENAI__NUM_RETRIES="0",
        DSPYQ_PROVIDERS__OPENAI__BREAKER_FAIL_MAX="1000",
        DSPYQ_CACHE__ENABLED="false",
    )
    try:
        cluster.start_worker("w1", concurrency=1)
        for failure, kind, status in CASES:
            server.fail_next(1, **failure)
            job = cluster.client.submit(
                dspyq.Predict("question -> answer"), lm="openai/m", question=str(failure)
            )
            with pytest.raises(kind) as caught:
                job.result(timeout=30)
            error: Any = caught.value
            assert isinstance(error, dspyq.DspyqError), failure
            assert (error.status, error.model) == (status, "m"), failure
            assert dspyq.is_retryable_lm_error(error) == (status in (503, 408)), failure
    finally:
        cluster.stop()
        server.stop()
