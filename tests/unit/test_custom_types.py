"""Custom types (Image, Audio, File, Code, Reasoning, ToolCalls) against DSPy 3.4.1.

Each case builds the same signature and values in both packages and compares the
messages the adapters format (byte for byte) and the values they parse.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import dspy
import pytest

import dspyq

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake image bytes" * 8).decode()
WAV = base64.b64encode(b"RIFF fake audio" * 4).decode()
PDF = b"%PDF-1.4 fake document"


def _signature(pkg: Any, fields: dict[str, tuple[str, Any]], doc: str = "Look closely.") -> Any:
    attrs: dict[str, Any] = {"__doc__": doc, "__annotations__": {}}
    for name, (role, annotation) in fields.items():
        attrs["__annotations__"][name] = (
            annotation if isinstance(annotation, type) else annotation(pkg)
        )
        attrs[name] = pkg.InputField() if role == "in" else pkg.OutputField()
    return type("Sig", (pkg.Signature,), attrs)


def _both(adapter: str, fields: dict[str, tuple[str, Any]], make_inputs: Any, demos: Any = None):
    results = []
    for pkg in (dspy, dspyq):
        sig = _signature(pkg, fields)
        inputs = make_inputs(pkg)
        demo_list = demos(pkg) if demos else []
        results.append(getattr(pkg, adapter)().format(sig, demo_list, inputs))
    return results


CASES = {
    "image_url": (
        {"image": ("in", lambda p: p.Image), "answer": ("out", str)},
        lambda p: {"image": p.Image("https://example.com/cat.png")},
    ),
    "image_data_uri_and_list": (
        {
            "image": ("in", lambda p: p.Image),
            "images": ("in", lambda p: list[p.Image]),
            "answer": ("out", str),
        },
        lambda p: {
            "image": p.Image(PNG),
            "images": [p.Image("https://example.com/a.png"), p.Image({"url": PNG})],
        },
    ),
    "audio": (
        {"clip": ("in", lambda p: p.Audio), "question": ("in", str), "answer": ("out", str)},
        lambda p: {"clip": p.Audio(data=WAV, audio_format="wav"), "question": "what «is» it?"},
    ),
    "audio_data_uri": (
        {"clip": ("in", lambda p: p.Audio), "answer": ("out", int)},
        lambda p: {"clip": p.Audio(f"data:audio/x-wav;base64,{WAV}")},
    ),
    "file": (
        {"doc": ("in", lambda p: p.File), "summary": ("out", str)},
        lambda p: {"doc": p.File.from_bytes(PDF, filename="a.pdf", mime_type="application/pdf")},
    ),
    "file_id_optional": (
        {"doc": ("in", lambda p: p.File | None), "summary": ("out", str)},
        lambda p: {"doc": p.File.from_file_id("file-123")},
    ),
    "code_in_and_out": (
        {"snippet": ("in", lambda p: p.Code), "fixed": ("out", lambda p: p.Code["java"])},
        lambda p: {"snippet": p.Code(code="print('hi')")},
    ),
    "tool_calls_out": (
        {"question": ("in", str), "calls": ("out", lambda p: p.ToolCalls)},
        lambda p: {"question": "weather in Paris?"},
    ),
    "reasoning_out": (
        {"question": ("in", str), "why": ("out", lambda p: p.Reasoning), "answer": ("out", str)},
        lambda p: {"question": "2+2?"},
    ),
}


@pytest.mark.parametrize("adapter", ["ChatAdapter", "JSONAdapter"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_format_matches_dspy(adapter: str, case: str) -> None:
    fields, make_inputs = CASES[case]
    theirs, ours = _both(adapter, fields, make_inputs)
    assert json.dumps(ours, ensure_ascii=False) == json.dumps(theirs, ensure_ascii=False)


def test_image_demo_and_history_split_like_dspy() -> None:
    fields = {"image": ("in", lambda p: p.Image), "answer": ("out", str)}

    def demos(pkg: Any) -> list[Any]:
        return [
            pkg.Example(image=pkg.Image("https://example.com/demo.png"), answer="a cat"),
            {"image": pkg.Image(PNG)},  # incomplete: dropped by both
        ]

    theirs, ours = _both(
        "ChatAdapter", fields, lambda p: {"image": p.Image("https://example.com/q.png")}, demos
    )
    assert ours == theirs
    assert ours[1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "https://example.com/demo.png"},
    }


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.Image(PNG),
        lambda p: p.Image("https://example.com/x.jpg"),
        lambda p: p.Audio(data=WAV, audio_format="mpeg"),
        lambda p: p.File.from_bytes(PDF, filename="x.pdf"),
        lambda p: p.File(file_id="f-1"),
        lambda p: p.Code(code="x = 1"),
        lambda p: p.Reasoning(content="because"),
    ],
)
def test_repr_str_and_dump_match_dspy(make: Any) -> None:
    theirs, ours = make(dspy), make(dspyq)
    assert repr(ours) == repr(theirs)
    assert str(ours) == str(theirs)
    assert ours.model_dump() == theirs.model_dump()
    assert ours.format() == theirs.format()


@pytest.mark.parametrize(
    "bad",
    [
        lambda p: p.Image("not a url"),
        lambda p: p.Image(42),
        lambda p: p.Audio("plain string"),
        lambda p: p.File("plain string"),
        lambda p: p.File({"other": 1}),
        lambda p: p.Image("https://example.com/a.png", url="https://example.com/b.png"),
    ],
)
def test_bad_values_raise_like_dspy(bad: Any) -> None:
    ours, theirs = _errors(bad)
    assert str(ours) == str(theirs)


def _errors(bad: Any) -> tuple[Any, Any]:
    """The errors ``bad`` raises with dspyq and with DSPy, checked to be of the same class."""
    with pytest.raises(Exception) as theirs:
        bad(dspy)
    with pytest.raises(Exception) as ours:
        bad(dspyq)
    assert type(ours.value).__name__ == type(theirs.value).__name__
    return ours.value, theirs.value


def test_from_path_reads_files_like_dspy(tmp_path: Any) -> None:
    image = tmp_path / "pic.png"
    image.write_bytes(b"\x89PNG" * 30)
    audio = tmp_path / "clip.wav"
    audio.write_bytes(b"RIFF" * 30)
    doc = tmp_path / "doc.pdf"
    doc.write_bytes(PDF)
    for make in (
        lambda p: p.Image.from_path(str(image)),
        lambda p: p.Audio.from_path(str(audio)),
        lambda p: p.File.from_path(str(doc)),
    ):
        assert make(dspyq).model_dump() == make(dspy).model_dump()
    with pytest.raises(ValueError, match="File not found"):
        dspyq.Image.from_path(str(tmp_path / "missing.png"))


PARSE_CASES = [
    (
        {"code": lambda p: p.Code},
        "[[ ## code ## ]]\n```python\nprint(1)\n```\n\n[[ ## completed ## ]]",
    ),
    ({"code": lambda p: p.Code}, '[[ ## code ## ]]\n{"code": "x = 2"}\n\n[[ ## completed ## ]]'),
    ({"code": lambda p: p.Code}, "[[ ## code ## ]]\nplain = 3\n\n[[ ## completed ## ]]"),
    (
        {"calls": lambda p: p.ToolCalls},
        '[[ ## calls ## ]]\n{"tool_calls": [{"name": "search", "args": {"q": "cats"}}]}',
    ),
    (
        {"calls": lambda p: p.ToolCalls},
        '[[ ## calls ## ]]\n[{"name": "f", "arguments": "{\\"a\\": 1}"}]',
    ),
    ({"calls": lambda p: p.ToolCalls}, '[[ ## calls ## ]]\n{"name": "f", "args": {}}'),
    ({"calls": lambda p: p.ToolCalls}, "[[ ## calls ## ]]\nnot json at all"),
    (
        {"why": lambda p: p.Reasoning, "answer": str},
        "[[ ## why ## ]]\nsteps\n\n[[ ## answer ## ]]\n4",
    ),
]


def _outcome(pkg: Any, adapter: str, outputs: dict[str, Any], completion: str) -> Any:
    fields: dict[str, tuple[str, Any]] = {"question": ("in", str)}
    fields.update({name: ("out", ann) for name, ann in outputs.items()})
    sig = _signature(pkg, fields)
    if adapter == "JSONAdapter":  # the same values, as the JSON adapter reads them
        completion = json.dumps(pkg.ChatAdapter().parse(sig, completion), default=_json)
    try:
        parsed = getattr(pkg, adapter)().parse(sig, completion)
    except Exception as exc:
        return type(exc).__name__
    return {
        name: (type(v).__name__, v.model_dump() if hasattr(v, "model_dump") else v)
        for name, v in parsed.items()
    }


def _json(value: Any) -> Any:
    return {name: getattr(value, name) for name in type(value).model_fields}


@pytest.mark.parametrize("adapter", ["ChatAdapter", "JSONAdapter"])
@pytest.mark.parametrize("index", range(len(PARSE_CASES)))
def test_parse_matches_dspy(adapter: str, index: int) -> None:
    outputs, completion = PARSE_CASES[index]
    if adapter == "JSONAdapter" and "not json" in completion:
        pytest.skip("the Chat case already fails before JSON")
    assert _outcome(dspyq, adapter, outputs, completion) == _outcome(
        dspy, adapter, outputs, completion
    )


def test_tool_calls_from_provider_shapes_match_dspy() -> None:
    provider = [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"call_id": "c2", "name": "g", "arguments": {"y": [2]}},
    ]
    ours, theirs = dspyq.ToolCalls.model_validate(provider), dspy.ToolCalls.model_validate(provider)
    assert ours.model_dump() == theirs.model_dump()
    assert [c.id for c in ours.tool_calls] == [c.id for c in theirs.tool_calls]
    assert ours.tool_calls[0].execute({"f": lambda x: x + 1}) == 2
    assert json.dumps(dspyq.ToolCalls.model_json_schema()) == json.dumps(
        dspy.ToolCalls.model_json_schema()
    )


def test_reasoning_behaves_as_its_text_like_dspy() -> None:
    ours, theirs = dspyq.Reasoning(content="Think."), dspy.Reasoning(content="Think.")
    for probe in (
        str,
        repr,
        len,
        lambda r: r == "Think.",
        lambda r: "in" in r,
        lambda r: r + "!",
        lambda r: r.upper(),
    ):
        assert probe(ours) == probe(theirs)
    assert dspyq.Code["java"].description() == dspy.Code["java"].description()


@pytest.mark.parametrize(
    "bad",
    [
        lambda p: p.Code.model_validate({"other": 1}),
        lambda p: p.Code.model_validate({"code": 3}),
        lambda p: p.Reasoning.model_validate({"content": 3}),
        lambda p: p.Reasoning.model_validate(4),
        lambda p: p.ToolCalls.model_validate({"tool_calls": "x"}),
    ],
)
def test_text_type_errors_match_dspy(bad: Any) -> None:
    ours, theirs = _errors(bad)
    assert ours.errors()[0]["msg"] == theirs.errors()[0]["msg"]
