"""compose() and adapt_signature(): merged fields and instructions, conflicts named,
adaptation events recorded."""

from __future__ import annotations

import pytest

import dspyq
from dspyq.core.observe import capture
from dspyq.errors import SignatureError


class Retrieve(dspyq.Signature):
    """Find the passages that answer the question."""

    question: str = dspyq.InputField()
    passages: list[str] = dspyq.OutputField()


class Answer(dspyq.Signature):
    """Answer from the passages."""

    question: str = dspyq.InputField()
    passages: list[str] = dspyq.OutputField(desc="unused here")
    answer: str = dspyq.OutputField()


def test_compose_merges_fields_in_order_and_instructions_once() -> None:
    composed = dspyq.compose(Retrieve, Answer, "question, context -> answer")
    assert list(composed.input_fields) == ["question", "context"]
    assert list(composed.output_fields) == ["passages", "answer"]
    assert composed.instructions == (
        "Find the passages that answer the question.\n\nAnswer from the passages."
    )
    assert composed.output_fields["passages"].annotation == list[str]


def test_compose_of_default_instructions_gets_dspys_default() -> None:
    composed = dspyq.compose("a -> b", "b2 -> c")
    assert composed.signature == "a, b2 -> b, c"
    assert composed.instructions == dspyq.Signature("a, b2 -> b, c").instructions


def test_compose_names_both_fields_on_a_role_conflict() -> None:
    with pytest.raises(SignatureError) as caught:
        dspyq.compose(Retrieve, "passages -> summary")
    message = str(caught.value)
    assert "Retrieve#1.passages (output, list" in message
    assert "StringSignature#2.passages (input, str)" in message


def test_compose_names_both_fields_on_a_type_conflict() -> None:
    with pytest.raises(SignatureError, match=r"answer \(output, str\).*answer \(output, int\)"):
        dspyq.compose("q -> answer", "q -> answer: int")


def test_adapt_signature_applies_changes_and_records_the_event() -> None:
    with capture() as events:
        adapted = dspyq.adapt_signature(
            "question -> answer",
            {
                "type": "medical",
                "add_inputs": {"patient_age": (int, "age in years")},
                "field_descriptions": {"answer": "a cautious answer"},
                "append_instructions": "Cite guidelines.",
            },
        )
    assert adapted.signature == "question, patient_age -> answer"
    assert adapted.input_fields["patient_age"].annotation is int
    assert adapted.instructions.endswith("\n\nCite guidelines.")
    assert [event.event_type for event in events] == ["signature_adapted"]
    data = events[0].data
    assert data["context_type"] == "medical"
    assert data["adaptations"] == [
        "add_input:patient_age",
        "describe:answer",
        "append_instructions",
    ]


@pytest.mark.parametrize(
    "context",
    [{"remove_fields": ["nope"]}, {"add_outputs": {"answer": str}}, {"colour": "red"}],
)
def test_adapt_signature_failure_is_recorded_then_raised(context: dict) -> None:
    with capture() as events, pytest.raises(SignatureError):
        dspyq.adapt_signature("question -> answer", context)
    assert [event.event_type for event in events] == ["signature_adaptation_failed"]
    assert events[0].data["reason"]
