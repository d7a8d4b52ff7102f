"""Each failure kind of an LM call, through DSPy 3.4.1 and through dspyq against the same
fake server: the error is of the same DSPy-named class, retryable alike, and carries the
same status, model, provider code and retry hint."""

from __future__ import annotations

import socket
from typing import Any

import dspy
import pytest

import dspyq
from dspyq import lm_errors
from dspyq.lm import LM
from dspyq.testing import FakeLMServer

MODEL = "openai/fake-model"

FAILURES: dict[str, dict[str, Any]] = {
    "rate_limit_retry_after": {"status": 429, "retry_after": 2},
    "auth_401": {"status": 401},
    "auth_403": {"status": 403},
    "payment_402": {"status": 402},
    "insufficient_quota": {"kind": "insufficient_quota"},
    "invalid_400": {"status": 400},
    "invalid_422": {"status": 422},
    "unknown_model_404": {"status": 404},
    "timeout_408": {"status": 408},
    "server_500": {"status": 500},
    "unavailable_503": {"status": 503},
    "context_window": {"kind": "context_length"},
    "no_answer_in_time": {"kind": "slow", "delay": 3.0},
    "malformed_body": {"kind": "malformed"},
}


def dspy_name(error: BaseException) -> str:
    """The most specific DSPy-named class of ``error`` (DSPy's own, or dspyq's copy)."""
    modules = {"dspy.utils.exceptions", lm_errors.__name__}
    return next(c.__name__ for c in type(error).__mro__ if c.__module__ in modules)


def fields(error: Any) -> dict[str, Any]:
    return {
        "status": error.status,
        "retry_after": error.retry_after,
        "provider_code": error.provider_code,
    }


def theirs(base: str, **options: Any) -> BaseException:
    lm = dspy.LM(MODEL, api_base=base, api_key="sk-x", num_retries=0, cache=False, **options)
    with pytest.raises(dspy.LMError) as caught:
        lm("hi")
    return caught.value


def ours(base: str, **options: Any) -> BaseException:
    lm = LM(MODEL, api_base=base, api_key="sk-x", num_retries=0, cache=False, **options)
    with pytest.raises(dspyq.LMError) as caught:
        lm("hi")
    return caught.value


@pytest.mark.parametrize("name", list(FAILURES))
def test_a_failure_is_the_same_dspy_error(fake_lm: FakeLMServer, name: str) -> None:
    failure = FAILURES[name]
    fake_lm.fail_next(1, **failure)
    their = theirs(fake_lm.openai_base, timeout=1.0)
    fake_lm.reset()
    fake_lm.fail_next(1, **failure)
    our = ours(fake_lm.openai_base, timeout=1.0)
    assert dspy_name(our) == dspy_name(their)
    assert dspyq.is_retryable_lm_error(our) == dspy.is_retryable_lm_error(their)
    assert isinstance(our, dspyq.DspyqError)  # still dspyq's, with its retry strategy
    assert fields(our) == fields(their)
    assert our.model is not None and their.model is not None


def test_a_refused_connection_is_a_transport_error_in_both() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}/v1"
    their, our = theirs(base), ours(base)
    assert dspy_name(our) == dspy_name(their) == "LMTransportError"
    assert dspyq.is_retryable_lm_error(our) and dspy.is_retryable_lm_error(their)
    assert (
        fields(our) == fields(their) == {"status": None, "retry_after": None, "provider_code": None}
    )
