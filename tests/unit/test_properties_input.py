"""Property-based tests: whatever bad input a user or a forged message brings, dspyq
answers with one of its own errors (a clear message), never a stray exception.

Covers the four ways data comes in: signature strings, job inputs, LM completions (the
adapters' parse) and program JSON (``ProgramSpec``, ``load_state``, ``Signature.from_json``).
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import dspyq
from dspyq.adapters import ChatAdapter, JSONAdapter
from dspyq.api_client.submit import build_request
from dspyq.api_client.validation import validate_input_json, validate_program_inputs
from dspyq.core.program import program_from_spec, program_to_spec
from dspyq.core.signature import InputField, OutputField, Signature, make_signature
from dspyq.errors import DspyqError, InputError

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def only_dspyq_errors(call: Callable[[], Any]) -> Any:
    """Run ``call``; a failure must be a DspyqError with a non-empty message."""
    try:
        return call()
    except DspyqError as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        return exc


# --- signature strings -----------------------------------------------------------------

signature_alphabet = string.ascii_letters + string.digits + " _,:-></[]|().'\"*=\n\t"
type_names = st.sampled_from(
    ["str", "int", "list[str]", "dict[str, int]", "Literal['a', 'b']", "Optional[int]",
     "Nope", "os.system", "list[", "int | None", "__import__('os')", "1", "lambda: 0"]
)  # fmt: skip
field_text = st.builds(
    lambda name, typ: f"{name}: {typ}" if typ else name,
    st.text(alphabet=string.ascii_letters + "_0123456789 ", min_size=0, max_size=8),
    st.none() | type_names,
)
side_text = st.lists(field_text, max_size=3).map(", ".join)


@PROPERTY_SETTINGS
@given(st.text(alphabet=signature_alphabet, max_size=60) | st.text(max_size=30))
@example("->")
@example("a -> a")
@example("a: __import__('os').system('true') -> b")
@example("a -> b -> c")
def test_any_signature_string_parses_or_raises_a_dspyq_error(spec: str) -> None:
    only_dspyq_errors(lambda: make_signature(spec))


@PROPERTY_SETTINGS
@given(side_text, side_text)
def test_structured_signature_strings_parse_or_raise_a_dspyq_error(left: str, right: str) -> None:
    result = only_dspyq_errors(lambda: make_signature(f"{left} -> {right}"))
    if not isinstance(result, DspyqError):
        assert set(result.input_fields).isdisjoint(result.output_fields)


# --- inputs ----------------------------------------------------------------------------


class Typed(Signature):
    """Typed inputs of every kind the validator checks."""

    text: str = InputField()
    count: int = InputField()
    tags: list[str] = InputField()
    choice: Literal["a", "b"] = InputField()
    maybe: int | None = InputField(default=None)
    answer: str = OutputField()


@PROPERTY_SETTINGS
@given(
    st.dictionaries(st.sampled_from(["text", "count", "tags", "choice", "maybe", "x"]), json_values)
)
def test_any_inputs_validate_or_raise_a_dspyq_error(inputs: dict[str, Any]) -> None:
    only_dspyq_errors(lambda: validate_program_inputs(dspyq.Predict(Typed), inputs))
    only_dspyq_errors(lambda: validate_program_inputs(dspyq.ChainOfThought("q -> a"), inputs))


# --- completions -----------------------------------------------------------------------


class Parsed(Signature):
    """Outputs of the types LMs get wrong most."""

    question: str = InputField()
    number: int = OutputField()
    flags: list[bool] = OutputField()
    label: Literal["yes", "no"] = OutputField()
    mapping: dict[str, float] = OutputField()


def _chat_completion(values: dict[str, str]) -> str:
    return "\n".join(f"[[ ## {name} ## ]]\n{value}" for name, value in values.items())


field_values = st.text(max_size=30) | json_values.map(json.dumps)
completions = st.one_of(
    st.text(max_size=200),
    st.dictionaries(
        st.sampled_from(["number", "flags", "label", "mapping", "other"]), field_values
    ).map(_chat_completion),
    st.dictionaries(
        st.sampled_from(["number", "flags", "label", "mapping", "other"]), json_values
    ).map(json.dumps),
    json_values.map(json.dumps),
)


@PROPERTY_SETTINGS
@given(completions)
@example("[[ ## number ## ]]\n1e999\n[[ ## completed ## ]]")
@example('{"number": 1e999, "flags": [], "label": "yes", "mapping": {}}')
@example('{"number": "NaN", "flags": [true], "label": "no", "mapping": {"a": "inf"}}')
def test_any_completion_parses_or_raises_a_dspyq_error(completion: str) -> None:
    for adapter in (ChatAdapter(), JSONAdapter()):
        result = only_dspyq_errors(lambda a=adapter: a.parse(Parsed, completion))  # type: ignore[misc]
        if not isinstance(result, DspyqError):
            assert set(result) >= set(Parsed.output_fields)


# --- program JSON ----------------------------------------------------------------------

GOOD_SPEC = program_to_spec(dspyq.ChainOfThought("question -> answer")).model_dump(mode="json")
spec_keys = st.sampled_from(["kind", "args", "init", "state", "signatures", "dspyq_version", "x"])
kinds = st.sampled_from(
    ["dspyq.core.predict:Predict", "dspyq.core.chain_of_thought:ChainOfThought", "os:system",
     "builtins:dict", "nope.nothing:Thing", "dspyq", ":", "a:b:c", "", "dspyq.core.predict:"]
)  # fmt: skip
mutated_specs = st.builds(
    lambda base, changes, kind: {**base, **changes, **({"kind": kind} if kind else {})},
    st.just(GOOD_SPEC),
    st.dictionaries(spec_keys, json_values, max_size=3),
    st.none() | kinds,
)


@PROPERTY_SETTINGS
@given(mutated_specs | st.dictionaries(spec_keys, json_values) | json_values)
@example({**GOOD_SPEC, "init": {"signature": {"__dspyq__": "signature", "json": 3}}})
@example({**GOOD_SPEC, "init": {"signature": {"__dspyq__": "program"}}})
@example({**GOOD_SPEC, "signatures": {"predict": {"fields": "x"}}})
@example({**GOOD_SPEC, "state": {"predict": {"demos": "nope"}}})
def test_any_program_json_rebuilds_or_raises_a_dspyq_error(spec: Any) -> None:
    only_dspyq_errors(lambda: program_from_spec(spec, allowed_prefixes=["dspyq"]))


state_shapes = st.fixed_dictionaries(
    {},
    optional={
        "predict": st.fixed_dictionaries(
            {},
            optional={
                "demos": json_values,
                "traces": json_values,
                "train": json_values,
                "signature": json_values
                | st.fixed_dictionaries(
                    {}, optional={"instructions": json_values, "fields": json_values}
                ),
                "lm": json_values,
            },
        )
        | json_values,
        "metadata": json_values,
        "other": json_values,
    },
)


@PROPERTY_SETTINGS
@given(state_shapes | json_values)
def test_any_saved_state_loads_or_raises_a_dspyq_error(state: Any) -> None:
    program = dspyq.ChainOfThought("question -> answer")
    only_dspyq_errors(lambda: program.load_state(state))


@PROPERTY_SETTINGS
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "name": json_values,
            "instructions": json_values,
            "fields": st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "name": st.text(max_size=6) | json_values,
                        "io": st.sampled_from(["input", "output", "x"]) | json_values,
                        "type": type_names | json_values,
                        "prefix": json_values,
                        "desc": json_values,
                    },
                ),
                max_size=3,
            )
            | json_values,
            "types": json_values,
        },
    )
    | json_values
)
def test_any_signature_json_rebuilds_or_raises_a_dspyq_error(data: Any) -> None:
    only_dspyq_errors(lambda: Signature.from_json(data))


def test_the_good_spec_still_rebuilds() -> None:
    """The mutations above start from a spec that works, so they test what they claim."""
    program = program_from_spec(GOOD_SPEC, allowed_prefixes=["dspyq"])
    assert type(program).__name__ == "ChainOfThought"


@pytest.mark.parametrize("spec", ["a -> b", "question: list[str], k: int -> answer: bool"])
def test_good_signatures_parse(spec: str) -> None:
    assert make_signature(spec).output_fields


# --- oversize inputs -------------------------------------------------------------------


def _unreachable_client(**settings_kwargs: Any) -> Any:
    """A client whose broker does not exist: any enqueue would fail with a connection error."""
    from dspyq.api_client import Client
    from dspyq.settings import Settings

    return Client(
        Settings(
            broker_url="redis://127.0.0.1:1/0",
            database_url="sqlite:///:memory:",
            **settings_kwargs,
        )
    )


def test_oversize_inputs_are_refused_before_enqueue() -> None:
    client = _unreachable_client(max_input_bytes=1000)
    program = dspyq.Predict("question -> answer")
    with pytest.raises(InputError, match=r"over the limit of 1000 bytes.*`question`"):
        client.submit(program, lm="openai/m", question="x" * 1001)
    with pytest.raises(InputError, match="over the limit"):  # map checks every item first
        client.map(program, [{"question": "ok"}, {"question": "é" * 600}], lm="openai/m")


def test_input_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from dspyq.settings import Settings

    assert Settings().max_input_bytes == 1_048_576
    monkeypatch.setenv("DSPYQ_MAX_INPUT_BYTES", "64")
    assert Settings().max_input_bytes == 64


@PROPERTY_SETTINGS
@given(st.dictionaries(st.text(max_size=5), json_values, max_size=4), st.integers(1, 400))
def test_input_size_check_accepts_exactly_up_to_the_limit(
    inputs: dict[str, Any], limit: int
) -> None:
    try:
        size = len(json.dumps(inputs, ensure_ascii=False, allow_nan=False).encode())
    except ValueError:  # infinity is not JSON: refused whatever its size
        size = limit + 1
    result = only_dspyq_errors(lambda: validate_input_json(inputs, limit))
    assert isinstance(result, InputError) == (size > limit)


def test_non_json_inputs_are_refused_with_a_clear_error() -> None:
    for bad in ({"q": float("nan")}, {"q": object()}, {"q": b"bytes"}):
        with pytest.raises(InputError, match="must be JSON values"):
            validate_input_json(bad, 1000)


@PROPERTY_SETTINGS
@given(
    st.dictionaries(st.text(max_size=6) | st.integers(), json_values | st.binary(max_size=4)),
    st.sampled_from(["openai/m", "nope/m", "m", "", "openai/"]),
)
def test_the_client_builds_a_job_or_raises_a_dspyq_error(inputs: dict[Any, Any], lm: str) -> None:
    """Everything the client checks before enqueueing, on any inputs and LM name."""
    client = _unreachable_client(max_input_bytes=200)
    for program in (dspyq.Predict(Typed), dspyq.ChainOfThought("question -> answer")):
        only_dspyq_errors(
            lambda p=program: build_request(client, p, lm, (), None, None, inputs, spec=None)  # type: ignore[misc]
        )
