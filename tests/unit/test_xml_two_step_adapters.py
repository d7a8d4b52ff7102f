"""XMLAdapter and TwoStepAdapter against DSPy 3.4.1: same messages, same values, same errors."""

from __future__ import annotations

from typing import Any, Optional

import dspy
import pydantic
import pytest
from dspy_reference import ScriptedLM

import dspyq
from dspyq.lm import LM
from dspyq.testing.fake_lm import FakeLMServer


class Item(pydantic.BaseModel):
    name: str
    qty: int = 1
    tags: list[str] = []


def signature_pair(lib: Any) -> Any:
    class Order(lib.Signature):
        """Read the order."""

        text: str = lib.InputField(desc="raw order")
        items: list[Item] = lib.OutputField()
        counts: dict[str, int] = lib.OutputField()
        best: Optional[Item] = lib.OutputField()  # noqa: UP045 - DSPy's spelling
        note: str = lib.OutputField()

    return Order


DEMOS = [
    {"text": "a & b", "items": [Item(name="a")], "counts": {"a": 1}, "best": None, "note": "x<y"},
    {"text": "partial", "note": "only a note"},
]

COMPLETIONS = [
    "<items><item><name>apple</name><qty>2</qty><tags><item>red</item></tags></item></items>\n"
    "<counts><apple>2</apple><entry key='two words'>3</entry></counts>\n<best></best>\n"
    "<note>\nfine &amp; dandy\n</note>",
    '<items>\n[{"name": "pear"}]\n</items><counts>{"p": 1}</counts><note>n</note>',
    "<items></items><counts></counts><best><name>b</name></best><note>b</note>",
    "<items><item><name>x</name><qty>many</qty></item></items><counts/><note>n</note>",
    "<note>only</note>",
    "<items><broken></items>",
    "",
]


def _outcome(fn: Any) -> Any:
    try:
        value = fn()
    except Exception as exc:
        return ("error", type(exc).__name__)
    return (
        "ok",
        {k: v.model_dump() if isinstance(v, pydantic.BaseModel) else v for k, v in value.items()},
    )


def test_xml_adapter_formats_like_dspy():
    ours = dspyq.XMLAdapter().format(signature_pair(dspyq), DEMOS, {"text": "3 apples <fresh>"})
    theirs = dspy.XMLAdapter().format(signature_pair(dspy), DEMOS, {"text": "3 apples <fresh>"})
    assert ours == theirs
    assert "Use this nested XML structure: <items><item><name>...</name>" in ours[-1]["content"]


@pytest.mark.parametrize("completion", COMPLETIONS)
def test_xml_adapter_parses_like_dspy(completion: str):
    ours = _outcome(lambda: dspyq.XMLAdapter().parse(signature_pair(dspyq), completion))
    theirs = _outcome(lambda: dspy.XMLAdapter().parse(signature_pair(dspy), completion))
    assert ours == theirs  # an error compares by name: dspyq's AdapterParseError has DSPy's


MAIN_ANSWER = "Let me think. The answer is 4, and I am quite sure."
EXTRACTED = "[[ ## reasoning ## ]]\n2+2\n\n[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"


def test_two_step_adapter_matches_dspy(fake_lm: FakeLMServer):
    fake_lm.answer(MAIN_ANSWER, match="You are a helpful assistant")
    fake_lm.answer(EXTRACTED, match="extract the fields")
    lm = LM("openai/main", api_base=fake_lm.openai_base, api_key="test", cache=False)
    extractor = LM("openai/small", api_base=fake_lm.openai_base, api_key="test", cache=False)
    demos = [dspyq.Example(question="1+1?", answer=2)]
    program = dspyq.ChainOfThought("question -> answer: int")
    program.predict.demos = demos
    with dspyq.context(lm=lm, adapter=dspyq.TwoStepAdapter(extractor)):
        ours = program(question="2+2?")

    main, small = ScriptedLM([MAIN_ANSWER]), ScriptedLM([EXTRACTED])
    reference = dspy.ChainOfThought("question -> answer: int")
    reference.predict.demos = [dspy.Example(question="1+1?", answer=2)]
    with dspy.context(lm=main, adapter=dspy.TwoStepAdapter(small)):
        theirs = reference(question="2+2?")

    assert dict(ours.items()) == dict(theirs.items()) == {"reasoning": "2+2", "answer": 4}
    sent = [entry["body"]["messages"] for entry in fake_lm.requests]
    assert sent == [main.calls[0], small.calls[0]]


def test_two_step_extraction_failure_is_an_adapter_parse_error(fake_lm: FakeLMServer):
    fake_lm.answer("no markers here")
    extractor = LM("openai/small", api_base=fake_lm.openai_base, api_key="test", cache=False)
    adapter = dspyq.TwoStepAdapter(extractor)
    with pytest.raises(dspyq.AdapterParseError, match="Failed to parse response from the original"):
        adapter.parse(dspyq.Signature("question -> answer"), "some prose")
    with pytest.raises(ValueError):
        dspyq.TwoStepAdapter(extraction_model="gpt-4o")
    with pytest.raises(ValueError):
        dspy.TwoStepAdapter(extraction_model="gpt-4o")
