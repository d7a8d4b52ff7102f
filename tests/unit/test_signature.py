"""Signatures: the string grammar, class form, edits and saved state, as DSPy 3.4.1 has them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Optional, Union

import pydantic
import pytest

from dspyq.core.signature import InputField, OutputField, Signature, field_extra, infer_prefix
from dspyq.core.types import History
from dspyq.errors import InputError, SignatureError

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"


def build(spec: str, instructions: str | None = None, **kwargs: Any) -> type[Signature]:
    """``Signature(spec, ...)`` exactly as users call it; type checkers cannot follow the
    metaclass that makes it return a class, hence the ignore."""
    return Signature(spec, instructions, **kwargs)  # type: ignore[call-arg,return-value]


class Citation(pydantic.BaseModel):
    source: str
    page: int


# --- string grammar ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "inputs", "outputs"),
    [
        ("question -> answer", ["question"], ["answer"]),
        ("a, b -> c, d", ["a", "b"], ["c", "d"]),
        ("q->a", ["q"], ["a"]),
        ("question, -> answer", ["question"], ["answer"]),
        ("-> answer", [], ["answer"]),
        ("question ->", ["question"], []),
        ("->", [], []),
        ("a, a -> b", ["a"], ["b"]),
        ("x = 3 -> y", ["x"], ["y"]),
        ("x: int = 3 -> y", ["x"], ["y"]),
        ("*args -> y", [], ["y"]),
        ("x, *, y -> z", ["x"], ["z"]),
        ("  first,\n  second  ->\n  out ", ["first", "second"], ["out"]),
        ("frage, größe -> antwort", ["frage", "größe"], ["antwort"]),
    ],
)
def test_string_grammar_accepts_what_dspy_accepts(
    spec: str, inputs: list[str], outputs: list[str]
) -> None:
    signature = build(spec)
    assert list(signature.input_fields) == inputs
    assert list(signature.output_fields) == outputs


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("question", "exactly one '->'"),
        ("a -> b -> c", "exactly one '->'"),
        ("a -> a", "distinct names"),
        ("a, b -> b", "distinct names"),
        ("my-field -> y", "not a comma-separated list"),
        ("1x -> y", "not a comma-separated list"),
        ("class -> y", "not a comma-separated list"),
        ("q -> a # comment", "not a comma-separated list"),
        ("x: MyUndefinedType -> y", "Unknown name `MyUndefinedType`"),
        ("x: numpy_not_imported.ndarray -> y", "Unknown name"),
        ("x: 'str' -> y", "must be types"),
        ("x: 3 -> y", "must be types"),
        ("x: json -> y", "must be types"),
        ("x: int[str] -> y", "Invalid type"),
        ("x: f(1) -> y", "Unsupported type expression"),
        ("_private -> y", "Invalid field name"),
    ],
)
def test_string_grammar_rejects_malformed_specs_with_signature_error(
    spec: str, fragment: str
) -> None:
    with pytest.raises(SignatureError) as caught:
        build(spec)
    assert fragment in str(caught.value)


def test_string_annotations_resolve_typing_builtins_and_caller_types() -> None:
    signature = build(
        "a: int, b: list[str], c: dict[str, Any], d: Optional[int], e: Citation -> "
        "f: int | None, g: Literal['x', 'y'], h: tuple[int, ...], i: History, j: pydantic.BaseModel"
    )
    annotations = {name: field.annotation for name, field in signature.fields.items()}
    assert annotations["a"] is int
    assert annotations["b"] == list[str]
    assert annotations["c"] == dict[str, Any]
    assert annotations["d"] == Optional[int]  # noqa: UP045 - DSPy's string grammar yields Union
    assert annotations["e"] is Citation
    assert annotations["f"] == Union[int, None]  # noqa: UP007
    assert annotations["g"] == Literal["x", "y"]
    assert annotations["h"] == tuple[int, ...]
    assert annotations["i"] is History
    assert annotations["j"] is pydantic.BaseModel


def test_custom_types_take_precedence_over_other_names() -> None:
    class Text(pydantic.BaseModel):  # shadows typing.Text
        body: str

    signature = build("x: Text -> y", custom_types={"Text": Text})
    assert signature.input_fields["x"].annotation is Text


def test_untyped_fields_are_str_with_default_desc_and_prefix() -> None:
    signature = build("search_query -> camelCaseText")
    field = signature.input_fields["search_query"]
    assert field.annotation is str
    assert field.json_schema_extra == {  # as DSPy 3.4.1 has it, the untyped mark included
        "IS_TYPE_UNDEFINED": True,
        "__dspy_field_type": "input",
        "prefix": "Search Query:",
        "desc": "${search_query}",
    }
    assert field_extra(signature.output_fields["camelCaseText"])["prefix"] == "Camel Case Text:"


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("search_query", "Search Query"),
        ("camelCaseText", "Camel Case Text"),
        ("text2number", "Text 2 Number"),
        ("HTMLParser", "HTML Parser"),
        ("question", "Question"),
        ("has_people", "Has People"),
        ("getHTTPResponse", "Get HTTP Response"),
    ],
)
def test_infer_prefix(name: str, prefix: str) -> None:
    assert infer_prefix(name) == prefix


def test_default_and_explicit_instructions() -> None:
    assert build("a, b -> c").instructions == "Given the fields `a`, `b`, produce the fields `c`."
    assert build("-> answer").instructions == "Given the fields , produce the fields `answer`."
    assert build("a -> c", "Do it.").instructions == "Do it."
    assert build("a -> c", "").instructions == "Given the fields `a`, produce the fields `c`."
    assert build("a, b -> c").signature == "a, b -> c"


def test_string_signature_is_a_new_class_each_time() -> None:
    first, second = build("a -> b"), build("a -> b")
    assert first is not second
    assert issubclass(first, Signature)
    assert first.__name__ == "StringSignature"
    assert first.equals(second)


# --- class form --------------------------------------------------------------------------


class Triage(Signature):
    """
    Triage a customer support ticket.

    Pick the team that should own it.
    """

    ticket: str = InputField(desc="Raw ticket text")
    past = InputField()
    team: Literal["billing", "technical"] = OutputField(desc="Owner")
    urgency: int = OutputField(ge=1, le=5)


def test_class_signature_fields_and_cleaned_docstring() -> None:
    assert Triage.instructions == (
        "Triage a customer support ticket.\n\nPick the team that should own it."
    )
    assert list(Triage.input_fields) == ["ticket", "past"]
    assert list(Triage.output_fields) == ["team", "urgency"]
    assert list(Triage.fields) == ["ticket", "past", "team", "urgency"]
    assert Triage.input_fields["past"].annotation is str
    extra = Triage.output_fields["urgency"].json_schema_extra
    assert extra == {
        "__dspy_field_type": "output",
        "constraints": "greater than or equal to: 1, less than or equal to: 5",
        "prefix": "Urgency:",
        "desc": "${urgency}",
    }


def test_class_without_docstring_gets_default_instructions_or_inherits() -> None:
    class Plain(Signature):
        question: str = InputField()
        answer: str = OutputField()

    class Child(Triage):
        note: str = OutputField()

    assert Plain.instructions == "Given the fields `question`, produce the fields `answer`."
    assert Child.instructions == Triage.instructions
    assert list(Child.output_fields) == ["team", "urgency", "note"]


def test_class_field_without_input_or_output_field_is_a_signature_error() -> None:
    with pytest.raises(SignatureError, match="must be declared with InputField or OutputField"):

        class Bare(Signature):
            """Doc."""

            question: str

    with pytest.raises(SignatureError, match="must be declared with InputField or OutputField"):

        class PlainField(Signature):
            question: str = pydantic.Field()
            answer: str = OutputField()


def test_class_field_of_unsupported_type_is_a_signature_error() -> None:
    class Opaque:
        pass

    with pytest.raises(SignatureError, match="unsupported field"):

        class Bad(Signature):
            """Doc."""

            thing: Opaque = InputField()
            answer: str = OutputField()


def test_class_fields_may_name_local_types_in_string_annotations() -> None:
    # This module uses `from __future__ import annotations`: every annotation is a string.
    class Local(pydantic.BaseModel):
        value: int

    class UsesLocal(Signature):
        """Doc."""

        item: Local = InputField()
        answer: list[Local] = OutputField()

    assert UsesLocal.input_fields["item"].annotation is Local
    assert UsesLocal.output_fields["answer"].annotation == list[Local]

    with pytest.raises(SignatureError, match="unknown type"):

        class Unknown(Signature):
            """Doc."""

            item: NotDefinedAnywhere = InputField()  # type: ignore[name-defined]  # noqa: F821
            answer: str = OutputField()


def test_input_field_with_bad_pydantic_option_is_a_signature_error() -> None:
    with pytest.raises(SignatureError):
        InputField(not_an_option=1)


# --- edits return new classes ----------------------------------------------------------------


def test_prepend_append_insert_delete() -> None:
    base = build("question -> answer")
    cot = base.prepend("reasoning", OutputField(prefix="Reasoning:", desc="${reasoning}"))
    assert cot.signature == "question -> reasoning, answer"
    assert cot.instructions == base.instructions  # the default text is kept, not recomputed
    assert cot.output_fields["reasoning"].annotation is str
    assert base.signature == "question -> answer"

    more = cot.append("context", InputField(), list[str]).insert(1, "hint", InputField())
    assert more.signature == "question, hint, context -> reasoning, answer"
    assert more.input_fields["context"].annotation == list[str]
    assert more.insert(-1, "score", OutputField(), float).signature == (
        "question, hint, context -> reasoning, answer, score"
    )
    assert more.delete("hint").signature == "question, context -> reasoning, answer"
    with pytest.raises(SignatureError, match="Invalid index"):
        more.insert(5, "x", InputField())
    with pytest.raises(SignatureError):
        more.insert(0, "x", pydantic.Field())


def test_with_instructions_and_updated_fields_leave_the_original_alone() -> None:
    renamed = Triage.with_instructions("New task.")
    assert renamed.instructions == "New task."
    assert renamed.__name__ == "Triage"
    updated = Triage.with_updated_fields("ticket", desc="The ticket", type_=list[str])
    assert field_extra(updated.input_fields["ticket"])["desc"] == "The ticket"
    assert updated.input_fields["ticket"].annotation == list[str]
    assert field_extra(Triage.input_fields["ticket"])["desc"] == "Raw ticket text"
    assert Triage.input_fields["ticket"].annotation is str
    assert not updated.equals(Triage)
    assert Triage.equals(Triage.with_instructions(Triage.instructions))
    with pytest.raises(SignatureError):
        Triage.with_updated_fields("nope", desc="x")


def test_dump_state_and_load_state_match_dspy_saved_form() -> None:
    saved = json.loads((REFERENCE / "dspy-3.4.1-saved-chain-of-thought.json").read_text())
    state = saved["predict"]["signature"]

    class QA(Signature):
        question: str = InputField()
        answer: str = OutputField()

    cot = QA.prepend("reasoning", OutputField(prefix="Reasoning:", desc="${reasoning}"))
    loaded = cot.load_state(state)
    assert loaded.dump_state() == state
    assert field_extra(loaded.output_fields["answer"])["desc"] == "often between 1 and 5 words"
    assert cot.dump_state()["instructions"] == (
        "Given the fields `question`, produce the fields `answer`."
    )


# --- JSON form ------------------------------------------------------------------------------


def test_to_json_from_json_round_trip_keeps_types_metadata_and_constraints() -> None:
    class Everything(Signature):
        """Do everything."""

        text: str = InputField(desc="the text")
        tags: list[str] = InputField()
        scores: dict[str, float] = InputField()
        maybe: Optional[int] = InputField(default=None)  # noqa: UP045 - typing form on purpose
        either: int | None = InputField()
        history: History = InputField()
        pair: tuple[int, ...] = InputField()
        label: Literal["a", "b", 3] = OutputField()
        cite: Citation = OutputField(prefix="Cite:")
        urgency: int = OutputField(ge=1, le=5)

    data = Everything.to_json()
    assert json.loads(json.dumps(data)) == data
    rebuilt = Signature.from_json(data)
    assert rebuilt.equals(Everything)
    assert rebuilt.__name__ == "Everything"
    assert rebuilt.fields["either"].annotation == (int | None)
    assert rebuilt.fields["cite"].annotation is Citation  # imported back by its path
    assert field_extra(rebuilt.output_fields["urgency"])["constraints"] == (
        "greater than or equal to: 1, less than or equal to: 5"
    )
    assert rebuilt.input_fields["maybe"].default is None


def test_from_json_rebuilds_a_model_from_its_schema_when_it_cannot_be_imported() -> None:
    class Person(pydantic.BaseModel):  # local class: no import path
        name: str
        citations: list[Citation]
        nickname: str | None = None

    signature = build("text -> person: Person")
    data = signature.to_json()
    assert data["types"]["Person"]["import_path"] is None
    rebuilt = Signature.from_json(data)
    model = rebuilt.output_fields["person"].annotation
    assert isinstance(model, type) and issubclass(model, pydantic.BaseModel)
    assert model is not Person
    assert model.model_json_schema() == Person.model_json_schema()


def test_from_json_rejects_malformed_data() -> None:
    with pytest.raises(SignatureError):
        Signature.from_json({"instructions": "x"})
    with pytest.raises(SignatureError):
        Signature.from_json({"fields": [{"name": "a", "io": "sideways", "type": "str"}]})
    with pytest.raises(SignatureError):
        Signature.from_json({"fields": [{"name": "a", "io": "input", "type": "Nope"}]})


def test_to_json_handles_builtin_generics_and_refuses_other_types() -> None:
    for spec in ("a: frozenset[bytes] -> b: complex", "a: Any -> b: set[int]"):
        signature = build(spec)
        assert Signature.from_json(signature.to_json()).equals(signature)
    with pytest.raises(SignatureError, match="Cannot serialise"):
        build("a: Callable[[int], str] -> b").to_json()


# --- validate_inputs ----------------------------------------------------------------------------


def test_validate_inputs_names_missing_and_mistyped_fields() -> None:
    signature = build("question, k: int, ctx: list[str], note: Optional[str] -> answer")
    ok = {"question": ["a", "b"], "k": 3, "ctx": ["x"]}
    assert signature.validate_inputs(ok) == ok
    with pytest.raises(InputError, match="Missing input field `k`"):
        signature.validate_inputs({"question": "q", "ctx": []})
    with pytest.raises(InputError, match="Input field `ctx` expects list"):
        signature.validate_inputs({"question": "q", "k": 1, "ctx": "not a list"})
    with pytest.raises(InputError, match="`k`") as caught:
        signature.validate_inputs({"question": "q", "k": "three", "ctx": []})
    assert caught.value.context["field"] == "k"


def test_history_model() -> None:
    history = History(messages=[{"question": "q", "answer": "a"}])
    assert history.messages[0]["answer"] == "a"
    with pytest.raises(pydantic.ValidationError):
        History(messages=[], extra=1)  # type: ignore[call-arg]
