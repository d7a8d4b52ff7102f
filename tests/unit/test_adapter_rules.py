"""Adapter rules beyond the captured fixtures, written from DSPy 3.4.1's documented behaviour.

Type notes, constraints, demos with missing fields, History turns, value rendering,
parsing edge cases, JSON mode and the Chat -> JSON fallback.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any, Literal, Optional

import pydantic
import pytest

from dspyq.adapters import ChatAdapter, JSONAdapter, format_field_value, parse_value
from dspyq.adapters.schema import output_type_note, type_first_sorted
from dspyq.core.signature import InputField, OutputField, Signature, make_signature
from dspyq.core.types import History
from dspyq.errors import AdapterParseError, ProviderError


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


class Point(pydantic.BaseModel):
    y: int
    x: int


class ScriptedLM:
    """The LM seam in miniature: returns scripted completions and records each call."""

    def __init__(self, *answers: Any, supports_response_schema: bool = True) -> None:
        self.answers = list(answers)
        self.supports_response_schema = supports_response_schema
        self.calls: list[dict[str, Any]] = []

    def __call__(self, messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> Any:
        self.calls.append({"messages": messages, "kwargs": kwargs})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer if isinstance(answer, list) else [answer]

    async def acall(self, messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> Any:
        return self(messages=messages, **kwargs)


def system(signature: type[Signature], adapter: ChatAdapter | None = None) -> str:
    return str((adapter or ChatAdapter()).format(signature, [], {})[0]["content"])


# --- system message ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "note"),
    [
        (str, ""),
        (bool, "must be True or False"),
        (int, "must be a single int value"),
        (float, "must be a single float value"),
        (Mood, "must be one of: happy; sad"),
        (Literal["a", "b c"], "must exactly match (no extra characters) one of: a; b c"),
        (
            list[int],
            'must adhere to the JSON schema: {"type": "array", "items": {"type": "integer"}}',
        ),
        (
            Point,
            'must adhere to the JSON schema: {"type": "object", "properties": {"x": {"type": '
            '"integer", "title": "X"}, "y": {"type": "integer", "title": "Y"}}, "required": ["y", '
            '"x"], "title": "Point"}',
        ),
        (
            Optional[int],  # noqa: UP045
            'must adhere to the JSON schema: {"anyOf": [{"type": "integer"}, {"type": "null"}]}',
        ),
    ],
)
def test_output_type_notes(annotation: Any, note: str) -> None:
    assert output_type_note(annotation) == note


def test_type_first_sorting_applies_at_every_level() -> None:
    schema = {"title": "T", "type": "object", "properties": {"b": {"type": "x"}, "a": {}}}
    assert list(type_first_sorted(schema)) == ["type", "properties", "title"]
    assert list(type_first_sorted(schema)["properties"]) == ["a", "b"]


def test_notes_only_on_outputs_and_constraints_on_any_field() -> None:
    class Rated(Signature):
        """Rate."""

        count: int = InputField(ge=0)
        text: str = InputField(min_length=1, max_length=9)
        stars: int = OutputField(gt=0, lt=6, desc="Stars")

    content = system(Rated)
    assert content.startswith(
        "Your input fields are:\n"
        "1. `count` (int): \nConstraints: greater than or equal to: 0\n"
        "2. `text` (str): \nConstraints: minimum length: 1, maximum length: 9\n"
        "Your output fields are:\n"
        "1. `stars` (int): Stars\nConstraints: greater than: 0, less than: 6\n"
    )
    assert "[[ ## count ## ]]\n{count}\n\n" in content
    assert "{stars}        # note: the value you produce must be a single int value" in content


def test_multi_line_instructions_are_indented_line_by_line() -> None:
    signature = make_signature("a -> b", "First line.\n\n    Indented second.\nThird.")
    assert system(signature).endswith(
        "In adhering to this structure, your objective is: \n"
        "        First line.\n"
        "        \n"
        "            Indented second.\n"
        "        Third."
    )


def test_type_names_in_descriptions_and_reminder() -> None:
    class Typed(Signature):
        """Doc."""

        a: dict[str, list[int]] = InputField()
        b: Optional[Mood] = OutputField()  # noqa: UP045
        c: int | None = OutputField()
        d: Literal["it's", 'say "hi"', 1] = OutputField()

    messages = ChatAdapter().format(Typed, [], {"a": {"k": [1]}})
    assert "1. `a` (dict[str, list[int]]):" in messages[0]["content"]
    assert "1. `b` (Union[Mood, NoneType]): " in messages[0]["content"]
    assert "2. `c` (Union[int, NoneType]): " in messages[0]["content"]
    assert """3. `d` (Literal["it's", 'say "hi"', 1]):""" in messages[0]["content"]
    assert messages[-1]["content"] == (
        '[[ ## a ## ]]\n{"k": [1]}\n\n'
        "Respond with the corresponding output fields, starting with the field `[[ ## b ## ]]` "
        "(must be formatted as a valid Python Union[Mood, NoneType]), then `[[ ## c ## ]]` (must be "
        "formatted as a valid Python Union[int, NoneType]), then `[[ ## d ## ]]` (must be "
        """formatted as a valid Python Literal["it's", 'say "hi"', 1]), and then ending with the """
        "marker for `[[ ## completed ## ]]`."
    )


# --- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "value", "text"),
    [
        (str, ["a", "b"], "[1] «a»\n[2] «b»"),
        (str, ["only"], "«only»"),
        (str, [], "N/A"),
        (
            str,
            ["line one\nline two", "x«y"],
            "[1] «««\n    line one\n    line two\n»»»\n[2] «««\n    x«y\n»»»",
        ),
        (list[str], ["a", "b"], '["a", "b"]'),
        (list[str], [], "[]"),
        (str, {"ключ": "значение", "n": 1}, '{"ключ": "значение", "n": 1}'),
        (str, 'plain "quoted" text', 'plain "quoted" text'),
        (str, True, "True"),
        (str, None, "None"),
        (int, 3, "3"),
        (float, 0.5, "0.5"),
        (str, Point(y=1, x=2), '{"y": 1, "x": 2}'),
        (str, Mood.SAD, "sad"),
        (str, ("t", 1), '["t", 1]'),
    ],
)
def test_format_field_value(annotation: Any, value: Any, text: str) -> None:
    field = make_signature("a -> b").with_updated_fields("a", type_=annotation).input_fields["a"]
    assert format_field_value(field, value) == text


def test_user_message_strips_edges_and_skips_missing_inputs() -> None:
    signature = make_signature("a, b, c -> d")
    content = ChatAdapter().format(signature, [], {"a": "  padded  ", "c": "x"})[-1]["content"]
    assert content.startswith("[[ ## a ## ]]\n  padded  \n\n[[ ## c ## ]]\nx\n\nRespond with")


# --- demos and history ------------------------------------------------------------------------------


def test_incomplete_demos_come_first_and_are_marked() -> None:
    signature = make_signature("question, context -> reasoning, answer")
    demos = [
        {"question": "q1", "context": "c1", "reasoning": "r1", "answer": "a1"},
        {"question": "q2", "answer": "a2"},
        {"question": "q3"},  # no output: dropped
        {"answer": "a4"},  # no input: dropped
        {"question": "q5", "context": None, "reasoning": "r5", "answer": "a5"},
    ]
    messages = ChatAdapter().format(signature, demos, {"question": "Q", "context": "C"})
    contents = [m["content"] for m in messages[1:-1]]
    assert [m["role"] for m in messages[1:-1]] == ["user", "assistant"] * 3
    prefix = "This is an example of the task, though some input or output fields are not supplied."
    assert contents[0] == f"{prefix}\n\n[[ ## question ## ]]\nq2"
    assert contents[1] == (
        "[[ ## reasoning ## ]]\nNot supplied for this particular example. \n\n"
        "[[ ## answer ## ]]\na2\n\n[[ ## completed ## ]]\n"
    )
    assert contents[2] == f"{prefix}\n\n[[ ## question ## ]]\nq5\n\n[[ ## context ## ]]\nNone"
    assert contents[4] == "[[ ## question ## ]]\nq1\n\n[[ ## context ## ]]\nc1"
    assert (
        contents[5]
        == "[[ ## reasoning ## ]]\nr1\n\n[[ ## answer ## ]]\na1\n\n[[ ## completed ## ]]\n"
    )


def test_missing_last_output_loses_its_trailing_space() -> None:
    signature = make_signature("q -> a, b")
    messages = ChatAdapter().format(signature, [{"q": "x", "a": "y"}], {"q": "z"})
    assert messages[2]["content"] == (
        "[[ ## a ## ]]\ny\n\n[[ ## b ## ]]\nNot supplied for this particular example.\n\n"
        "[[ ## completed ## ]]\n"
    )


def test_demos_may_be_dict_like_objects() -> None:
    class Record:
        def __init__(self, **values: Any) -> None:
            self.values = values

        def items(self) -> Any:
            return self.values.items()

    signature = make_signature("q -> a")
    as_dict = ChatAdapter().format(signature, [{"q": "x", "a": "y"}], {"q": "z"})
    assert ChatAdapter().format(signature, [Record(q="x", a="y")], {"q": "z"}) == as_dict


def test_history_turns_follow_demos_and_precede_the_request() -> None:
    class Chat(Signature):
        """Chat."""

        question: str = InputField()
        history: History = InputField()
        answer: str = OutputField()
        mood: Mood = OutputField()

    history = History(
        messages=[
            {"question": "hi", "answer": "hello", "mood": "happy"},
            {"question": "bye", "answer": "see you"},
        ]
    )
    demo = {"question": "dq", "history": History(messages=[]), "answer": "da", "mood": "sad"}
    messages = ChatAdapter().format(Chat, [demo], {"question": "again?", "history": history})
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert "2. `history` (History):" in messages[0]["content"]
    assert (
        messages[1]["content"]
        == '[[ ## question ## ]]\ndq\n\n[[ ## history ## ]]\n{"messages": []}'
    )
    reminder = (
        "Respond with the corresponding output fields, starting with the field `[[ ## answer ## ]]`, "
        "then `[[ ## mood ## ]]` (must be formatted as a valid Python Mood), and then ending with "
        "the marker for `[[ ## completed ## ]]`."
    )
    assert messages[3]["content"] == f"[[ ## question ## ]]\nhi\n\n{reminder}"
    assert messages[4]["content"] == (
        "[[ ## answer ## ]]\nhello\n\n[[ ## mood ## ]]\nhappy\n\n[[ ## completed ## ]]\n"
    )
    assert messages[6]["content"] == (
        "[[ ## answer ## ]]\nsee you\n\n[[ ## mood ## ]]\nNone\n\n[[ ## completed ## ]]\n"
    )
    assert messages[7]["content"] == f"[[ ## question ## ]]\nagain?\n\n{reminder}"


def test_json_adapter_demos_and_history_are_json() -> None:
    signature = make_signature("q -> a, n: int")
    history = History(messages=[{"q": "first", "a": "één", "n": 1}])
    messages = JSONAdapter().format(
        signature.append("history", InputField(), History),
        [{"q": "x", "a": "ü", "n": 2}],
        {"q": "y", "history": history},
    )
    assert messages[2]["content"] == '{\n  "a": "ü",\n  "n": 2\n}'
    assert messages[3]["content"] == (
        "[[ ## q ## ]]\nfirst\n\nRespond with a JSON object in the following order of fields: "
        "`a`, then `n` (must be formatted as a valid Python int)."
    )
    assert messages[4]["content"] == '{\n  "a": "één",\n  "n": 1\n}'


# --- parsing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "annotation", "expected"),
    [
        ("3.0", int, 3),
        ("yes", bool, True),
        ("False", bool, False),
        ("['a','b']", list[str], ["a", "b"]),
        ('["a", "b"]', list[str], ["a", "b"]),
        ("{'k':'v'}", dict[str, str], {"k": "v"}),
        ('{"k": [1, 2', dict[str, list[int]], {"k": [1, 2]}),
        ('```json\n{"y": 1, "x": 2}\n```', Point, Point(y=1, x=2)),
        ("happy", Mood, Mood.HAPPY),
        ("SAD", Mood, Mood.SAD),
        ("pos", Literal["pos", "neg"], "pos"),
        (" 'neg' ", Literal["pos", "neg"], "neg"),
        ("Literal['neg']", Literal["pos", "neg"], "neg"),
        ("2", Literal[1, 2], 2),
        ("None", Optional[int], None),  # noqa: UP045
        ("42", Optional[str], "42"),  # noqa: UP045
        ("  spaced  ", str, "  spaced  "),
    ],
)
def test_parse_value_accepts(text: str, annotation: Any, expected: Any) -> None:
    value = parse_value(text, annotation)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "annotation"),
    [
        ("3.5", int),
        ("three", int),
        ("maybe", bool),
        ("- a\n- b", list[str]),
        ("a, b", list[str]),
        ("0.75 (fairly confident)", float),
        ("Neutral", Literal["positive", "negative"]),
        ("POS", Literal["pos", "neg"]),
        ("angry", Mood),
    ],
)
def test_parse_value_rejects(text: str, annotation: Any) -> None:
    with pytest.raises((ValueError, pydantic.ValidationError)):
        parse_value(text, annotation)


def test_chat_parse_sections() -> None:
    signature = make_signature("q -> a, b: int")
    completion = (
        "Preamble that is ignored.\n"
        "[[ ## a ## ]] inline start\nmore\n\n"
        "[[ ## unknown ## ]]\nzzz\n"
        "[[ ## b ## ]]\n7\n"
        "[[ ## a ## ]]\nsecond a is ignored\n"
    )
    assert ChatAdapter().parse(signature, completion) == {"a": "inline start\nmore", "b": 7}
    with pytest.raises(AdapterParseError) as caught:
        ChatAdapter().parse(signature, "[[## a ##]]\nx\n[[ ## b ## ]]\n1")
    assert "Actual output fields parsed from the LM response: [b]" in str(caught.value)
    assert caught.value.adapter_name == "ChatAdapter"
    assert caught.value.parsed_result == {"b": 1}
    assert caught.value.signature is signature


def test_missing_optional_outputs_are_filled_in() -> None:
    class Optionals(Signature):
        """Doc."""

        q: str = InputField()
        a: str = OutputField()
        note: Optional[str] = OutputField()  # noqa: UP045
        tags: list[str] = OutputField(default=["none"])

    parsed = ChatAdapter().parse(Optionals, "[[ ## a ## ]]\nyes")
    assert parsed == {"a": "yes", "note": None, "tags": ["none"]}
    assert JSONAdapter().parse(Optionals, '{"a": "yes"}') == parsed


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ('{"a": "x", "n": 3}', {"a": "x", "n": 3}),
        ('{"a": "x", "n": "3", "extra": 1}', {"a": "x", "n": 3}),
        ('Sure! Here you go: {"a": "x", "n": 1} Hope it helps {', {"a": "x", "n": 1}),
        ('```json\n{"a": "x", "n": 2}\n```', {"a": "x", "n": 2}),
        ('{"a": 5, "n": 2}', {"a": "5", "n": 2}),
    ],
)
def test_json_parse_accepts(completion: str, expected: dict[str, Any]) -> None:
    assert JSONAdapter().parse(make_signature("q -> a, n: int"), completion) == expected


def test_json_parse_string_holding_a_list() -> None:
    parsed = JSONAdapter().parse(make_signature("q -> tags: list[str]"), '{"tags": "[\\"a\\"]"}')
    assert parsed == {"tags": ["a"]}


@pytest.mark.parametrize(
    ("completion", "fragment"),
    [
        ('["a", "b"]', "LM response cannot be serialized to a JSON object."),
        ("[[ ## a ## ]]\nx\n\n[[ ## completed ## ]]", "cannot be serialized"),
        ("just words", "cannot be serialized"),
        ('{"a": "x"}', "Actual output fields parsed from the LM response: [a]"),
        ('{"a": "x", "n": "many"}', "Failed to parse field n with value many"),
    ],
)
def test_json_parse_rejects(completion: str, fragment: str) -> None:
    with pytest.raises(AdapterParseError) as caught:
        JSONAdapter().parse(make_signature("q -> a, n: int"), completion)
    assert fragment in str(caught.value)
    assert caught.value.adapter_name == "JSONAdapter"


# --- calling the LM -------------------------------------------------------------------------------


def test_call_parses_every_completion_and_passes_kwargs_through() -> None:
    lm = ScriptedLM(["[[ ## a ## ]]\n1", {"text": "[[ ## a ## ]]\n2"}])
    kwargs = {"temperature": 0.7, "n": 2}
    results = ChatAdapter()(lm, kwargs, make_signature("q -> a: int"), [], {"q": "x"})
    assert results == [{"a": 1}, {"a": 2}]
    assert lm.calls[0]["kwargs"] == {"temperature": 0.7, "n": 2}
    assert kwargs == {"temperature": 0.7, "n": 2}


@pytest.mark.parametrize("empty", ["", None, {"text": None}])
def test_empty_completion_is_a_parse_error(empty: Any) -> None:
    lm = ScriptedLM([empty])
    with pytest.raises(AdapterParseError, match=r"^The LM returned an empty or null response\."):
        ChatAdapter(use_json_adapter_fallback=False)(
            lm, {}, make_signature("q -> a"), [], {"q": "x"}
        )


def test_chat_falls_back_to_json_once_on_parse_error() -> None:
    lm = ScriptedLM("no markers here", '{"a": "fine"}')
    signature = make_signature("q -> a")
    assert ChatAdapter()(lm, {"temperature": 0}, signature, [], {"q": "x"}) == [{"a": "fine"}]
    assert len(lm.calls) == 2
    assert lm.calls[1]["messages"] == JSONAdapter().format(signature, [], {"q": "x"})
    assert lm.calls[1]["kwargs"]["temperature"] == 0
    assert lm.calls[1]["kwargs"]["response_format"].__name__ == "DSPyProgramOutputs"


def test_empty_completion_also_falls_back() -> None:
    lm = ScriptedLM("", '{"a": "fine"}')
    assert ChatAdapter()(lm, {}, make_signature("q -> a"), [], {"q": "x"}) == [{"a": "fine"}]


def test_no_fallback_for_other_errors_or_when_disabled_or_already_json() -> None:
    signature = make_signature("q -> a")
    lm = ScriptedLM(ProviderError("down"))
    with pytest.raises(ProviderError):
        ChatAdapter()(lm, {}, signature, [], {"q": "x"})
    assert len(lm.calls) == 1
    lm = ScriptedLM("no markers")
    with pytest.raises(AdapterParseError):
        ChatAdapter(use_json_adapter_fallback=False)(lm, {}, signature, [], {"q": "x"})
    assert len(lm.calls) == 1
    lm = ScriptedLM("not json")
    with pytest.raises(AdapterParseError):
        JSONAdapter()(lm, {}, signature, [], {"q": "x"})
    assert len(lm.calls) == 1


def test_async_call_falls_back_the_same_way() -> None:
    lm = ScriptedLM("no markers here", '{"a": "fine"}')
    result = asyncio.run(ChatAdapter().acall(lm, {}, make_signature("q -> a"), [], {"q": "x"}))
    assert result == [{"a": "fine"}]
    assert len(lm.calls) == 2


def test_json_response_format_choices() -> None:
    def response_format(lm: Any, signature: type[Signature]) -> Any:
        JSONAdapter()(lm, {"response_format": "overridden"}, signature, [], {"q": "x"})
        return lm.calls[-1]["kwargs"].get("response_format", "absent")

    strict = response_format(ScriptedLM('{"a": "x"}'), make_signature("q -> a"))
    assert strict.model_json_schema()["additionalProperties"] is False
    no_schema = ScriptedLM('{"a": "x"}', supports_response_schema=False)
    assert response_format(no_schema, make_signature("q -> a")) == {"type": "json_object"}
    open_dict = ScriptedLM('{"a": {"k": 1}}')
    assert response_format(open_dict, make_signature("q -> a: dict[str, int]")) == {
        "type": "json_object"
    }

    class NoResponseFormat(ScriptedLM):
        supported_params = ("temperature",)

    assert response_format(NoResponseFormat('{"a": "x"}'), make_signature("q -> a")) == "overridden"


def test_structured_schema_is_strict_all_the_way_down() -> None:
    class Inner(pydantic.BaseModel):
        label: str = "none"
        meta: dict[str, Any] | None = None

    lm = ScriptedLM('{"items": [], "score": 1.0}')
    JSONAdapter()(lm, {}, make_signature("q -> items: list[Inner], score: float"), [], {"q": "x"})
    schema = lm.calls[0]["kwargs"]["response_format"].model_json_schema()
    inner = schema["$defs"]["Inner"]
    assert inner["required"] == ["label", "meta"]
    assert inner["additionalProperties"] is False
    assert "default" not in inner["properties"]["label"]
    assert schema["required"] == ["items", "score"]
