"""dspyq's copies of DSPy 3.4.1's LM error classes: same names in the same places, same
bases, codes, fields, messages and retryability; dspyq's own provider errors are
instances of the matching class without losing their own code, message or retry."""

from __future__ import annotations

import inspect
import pickle

import dspy
import dspy.utils.exceptions as theirs
import pytest

import dspyq
import dspyq.utils.exceptions as ours
from dspyq import errors, lm_errors

NAMES = [n for n in lm_errors.__all__ if n != "is_retryable_lm_error"]
KWARGS = {
    "model": "openai/m",
    "provider": "openai",
    "provider_code": "rate_limit_exceeded",
    "status": 429,
    "request_id": "req_1",
    "retry_after": 1.5,
}
FIELDS = ["message", "code", "model", "provider", "provider_code", "status", "request_id"]


def test_every_dspy_name_is_where_dspy_has_it() -> None:
    for name in [*NAMES, "is_retryable_lm_error"]:
        assert hasattr(dspy, name) and hasattr(theirs, name)
        assert getattr(dspyq, name) is getattr(ours, name), name


@pytest.mark.parametrize("name", NAMES)
def test_a_class_matches_dspys(name: str) -> None:
    mine, reference = getattr(lm_errors, name), getattr(theirs, name)
    assert [b.__name__ for b in mine.__bases__] == [b.__name__ for b in reference.__bases__]
    assert mine.default_code == reference.default_code
    assert list(inspect.signature(mine).parameters) == list(inspect.signature(reference).parameters)
    kwargs = dict(KWARGS)
    if name != "ContextWindowExceededError":
        kwargs["message"] = "boom"
    made, expected = mine(**kwargs), reference(**kwargs)
    assert str(made) == str(expected)
    assert {f: getattr(made, f) for f in [*FIELDS, "retry_after"]} == {
        f: getattr(expected, f) for f in [*FIELDS, "retry_after"]
    }
    assert lm_errors.is_retryable_lm_error(made) == dspy.is_retryable_lm_error(expected)


def test_an_error_without_a_model_shows_no_prefix() -> None:
    assert str(lm_errors.LMError("x")) == str(theirs.LMError("x")) == "x"
    assert str(lm_errors.LMError(model="m")) == str(theirs.LMError(model="m")) == "[m]"


def test_extra_fields_match_dspys() -> None:
    for cls in ("LMUnsupportedFeatureError",):
        a = getattr(lm_errors, cls)("x", feature="tools", issues=["no"])
        b = getattr(theirs, cls)("x", feature="tools", issues=["no"])
        assert (a.feature, a.features, a.issues) == (b.feature, b.features, b.issues)
    a2 = lm_errors.LMStreamAssemblyError("x", partial="p", part_index=2)
    b2 = theirs.LMStreamAssemblyError("x", partial="p", part_index=2)
    assert (a2.partial, a2.part_index) == (b2.partial, b2.part_index)
    a3 = lm_errors.LMLockTimeoutError("x", path="a", lock_path="b")
    assert (a3.path, a3.lock_path) == ("a", "b")
    assert lm_errors.LMCollectionLimitError("x").partial is None


CASES = [
    (errors.RateLimitedError, "LMRateLimitError", "backoff"),
    (errors.AuthenticationError, "LMAuthError", "none"),
    (errors.QuotaExceededError, "LMBillingError", "none"),
    (errors.BadRequestError, "LMInvalidRequestError", "none"),
    (errors.UnknownModelError, "LMUnsupportedModelError", "none"),
    (errors.ContextWindowExceededError, "ContextWindowExceededError", "none"),
    (errors.MalformedResponseError, "LMProviderError", "backoff"),
    (errors.ProviderServerError, "LMServerError", "backoff"),
    (errors.ProviderTimeoutError, "LMTimeoutError", "backoff"),
    (errors.ProviderUnreachableError, "LMTransportError", "backoff"),
    (errors.ProviderUnavailableError, "LMError", "backoff"),
    (errors.ProviderError, "LMError", "none"),
]


@pytest.mark.parametrize(("cls", "kind", "retry"), CASES)
def test_a_dspyq_provider_error_is_dspys_kind_too(cls: type, kind: str, retry: str) -> None:
    context = {"model": "m", "provider": "openai", "status": 503, "error_code": "x"}
    error = cls("it failed", context=context)
    assert isinstance(error, getattr(lm_errors, kind)) and isinstance(error, errors.DspyqError)
    assert (error.message, str(error), error.retry_strategy) == ("it failed", "it failed", retry)
    assert isinstance(error.code, int) and error.to_dict()["code"] == cls.code
    assert (error.model, error.status, error.provider_code) == ("m", 503, "x")
    for rebuilt in (
        errors.DspyqError.from_dict(error.to_dict()),
        pickle.loads(pickle.dumps(error)),
    ):
        assert type(rebuilt) is cls and rebuilt.status == 503


def test_a_variant_keeps_its_parents_recorded_name() -> None:
    error = errors.ProviderServerError("503")
    assert type(error).__name__ == "ProviderUnavailableError"
    assert error.to_dict()["type"] == "ProviderUnavailableError"
    assert error.to_dict()["lm_error"] == "LMServerError"


def test_context_window_error_is_raised_as_dspys_is() -> None:
    error = dspyq.ContextWindowExceededError(model="m")
    assert str(error) == "Context window exceeded" and error.model == "m"
    assert isinstance(error, lm_errors.ContextWindowExceededError)
    assert isinstance(error, errors.BadRequestError)


def test_errors_outside_the_lm_boundary_are_not_lm_errors() -> None:
    for error in (errors.CircuitOpenError("x"), errors.RateLimitExceededError("x")):
        assert not isinstance(error, lm_errors.DSPyError)
        assert not lm_errors.is_retryable_lm_error(error)
    assert not dspy.is_retryable_lm_error(ValueError()) and not dspyq.is_retryable_lm_error(
        ValueError()
    )
