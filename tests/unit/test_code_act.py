"""CodeAct against DSPy 3.4.1: the same scripted completions give the same messages and results.

DSPy's side runs its code in DSPy's LocalInterpreter (errors shaped as its Deno sandbox
reports them), ours in the sandboxed PythonInterpreter. A turn's code may fail to parse,
fail to run, or run; the tools' source is defined in the interpreter before the first turn.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import dspy
import pytest
from dspy_reference import DenoShapedInterpreter, ScriptedLM, warning_texts

import dspyq
from dspyq.lm import LM
from dspyq.testing.fake_lm import FakeLMServer


def factorial(n: int) -> int:
    """The factorial of n."""
    return 1 if n <= 1 else n * factorial(n - 1)


def shout(text: str, times: int = 1) -> str:
    return text.upper() * times


def chat(**fields: Any) -> str:
    return (
        "\n\n".join(f"[[ ## {k} ## ]]\n{v}" for k, v in fields.items())
        + "\n\n[[ ## completed ## ]]"
    )


def run_both(
    fake_lm: FakeLMServer, answers: list[str], signature: Any, tools: list[Any], **options: Any
) -> tuple[Any, Any, list[Any], list[Any]]:
    """(ours, theirs, messages ours sent, messages DSPy sent) for one call on each side."""
    inputs = options.pop("inputs")
    for text in answers:
        fake_lm.answer(text, times=1)
    lm = LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="t", cache=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        program = dspyq.CodeAct(signature, tools=tools, **options)
        reference = dspy.CodeAct(
            signature, tools=tools, interpreter_factory=DenoShapedInterpreter, **options
        )
    with dspyq.context(lm=lm):
        ours = program(**inputs)
    scripted = ScriptedLM(list(answers))
    with dspy.context(lm=scripted):
        theirs = reference(**inputs)
    sent = [entry["body"]["messages"] for entry in fake_lm.requests]
    return ours, theirs, sent, scripted.calls


TURNS = [
    chat(generated_code="a = 1; b = 2", finished=False),
    chat(generated_code="```python\nvalue = factorial(5) / 0\n```", finished=False),
    chat(generated_code="```python\nvalue = factorial(5)\n```", finished=True),
    chat(reasoning="the code printed 120", factorial="120"),
]


def test_code_act_matches_dspy(fake_lm: FakeLMServer):
    ours, theirs, sent, expected = run_both(
        fake_lm, TURNS, "n: int -> factorial: int", [factorial], inputs={"n": 5}
    )
    assert sent == expected
    assert len(sent) == 4
    assert dict(ours.items()) == dict(theirs.items())
    assert ours.factorial == 120
    assert ours.trajectory == {
        "observation_0": "Failed to parse the generated code: Error: Code format is not correct.",
        "generated_code_1": "value = factorial(5) / 0\nvalue",
        "observation_1": "Failed to execute the generated code: ZeroDivisionError: ['division by zero']",
        "generated_code_2": "value = factorial(5)\nvalue",
        "code_output_2": "120",
    }
    assert (
        "(1) factorial, whose description is <desc>The factorial of n.</desc>"
        in (sent[0][0]["content"])
    )


def test_code_act_stops_at_max_iters_and_keeps_instructions(fake_lm: FakeLMServer):
    class Shout(dspy.Signature):
        """Shout the text."""

        text: str = dspy.InputField()
        loud: str = dspy.OutputField()

    class OurShout(dspyq.Signature):
        """Shout the text."""

        text: str = dspyq.InputField()
        loud: str = dspyq.OutputField()

    turns = [
        chat(generated_code="```python\nprint(shout(text, 2))\nx = 3\n```", finished=False),
        chat(generated_code="```python\nimport math\nmath.sqrt(16)\n```", finished="false"),
        chat(reasoning="r", loud="HIHI"),
    ]
    for text in turns:
        fake_lm.answer(text, times=1)
    lm = LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="t", cache=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        program = dspyq.CodeAct(OurShout, tools=[shout, factorial], max_iters=5)
        reference = dspy.CodeAct(
            Shout, tools=[shout, factorial], interpreter_factory=DenoShapedInterpreter
        )
    with dspyq.context(lm=lm):
        ours = program(text="hi", max_iters=2)
    scripted = ScriptedLM(list(turns))
    with dspy.context(lm=scripted):
        theirs = reference(text="hi", max_iters=2)
    assert [entry["body"]["messages"] for entry in fake_lm.requests] == scripted.calls
    assert dict(ours.items()) == dict(theirs.items())
    assert ours.trajectory["code_output_1"] == "4.0"
    assert scripted.calls[0][0]["content"].count("Shout the text.") == 1


def test_code_act_refuses_what_dspy_refuses():
    class Counter:
        def __call__(self, n: int) -> int:
            return n

    with warnings.catch_warnings(record=True) as ours_warned:
        warnings.simplefilter("always")
        ours = dspyq.CodeAct("n -> m", tools=[factorial])
    with warnings.catch_warnings(record=True) as theirs_warned:
        warnings.simplefilter("always")
        dspy.CodeAct("n -> m", tools=[factorial])
    assert warning_texts(ours_warned) == warning_texts(theirs_warned)
    assert isinstance(ours, dspyq.ReAct) and isinstance(ours, dspyq.ProgramOfThought)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for module in (dspyq, dspy):
            with pytest.raises(ValueError, match="only accepts functions"):
                module.CodeAct("n -> m", tools=[Counter()])
            with pytest.raises(TypeError, match="first positional argument"):
                module.CodeAct("n -> m", tools=[factorial])(n=1, interpreter=object())


def test_code_act_uses_a_caller_owned_interpreter(fake_lm: FakeLMServer):
    fake_lm.answer(
        chat(generated_code="```python\nseen = factorial(4) + base\n```", finished=True), times=1
    )
    fake_lm.answer(chat(reasoning="r", m="25"), times=1)
    lm = LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="t", cache=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        program = dspyq.CodeAct("n -> m", tools=[factorial])
    with dspyq.PythonInterpreter(timeout=10) as sandbox, dspyq.context(lm=lm):
        sandbox.execute("base = 1")
        result = program(sandbox, n=4)
        assert sandbox.execute("seen") == 25  # still running: the caller owns it
    assert result.trajectory["code_output_0"] == "25"


def test_code_act_runs_async(fake_lm: FakeLMServer):
    # DSPy 3.4.1's CodeAct inherits ReAct's async loop, which needs ``self.react``; ours runs its own.
    for text in (chat(generated_code="```python\nfactorial(3)\n```", finished=True), TURNS[-1]):
        fake_lm.answer(text, times=1)
    lm = LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="t", cache=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        program = dspyq.CodeAct("n: int -> factorial: int", tools=[factorial])

    async def run() -> Any:
        with dspyq.context(lm=lm):
            return await program.acall(n=3)

    result = asyncio.run(run())
    assert result.trajectory == {"generated_code_0": "factorial(3)", "code_output_0": "6"}
    assert result.factorial == 120


def test_code_act_with_json_adapter_matches_dspy(fake_lm: FakeLMServer):
    turns = [
        '{"generated_code": "```python\\nx = [factorial(4)]\\n```", "finished": false}',
        '{"generated_code": "factorial(2)", "finished": true}',
        '{"reasoning": "r", "factorial": 24}',
    ]
    for text in turns:
        fake_lm.answer(text, times=1)
    lm = LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="t", cache=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        program = dspyq.CodeAct("n: int -> factorial: int", tools=[factorial])
        reference = dspy.CodeAct(
            "n: int -> factorial: int", tools=[factorial], interpreter_factory=DenoShapedInterpreter
        )
    with dspyq.context(lm=lm, adapter=dspyq.JSONAdapter()):
        ours = program(n=4)
    scripted = ScriptedLM(list(turns))
    with dspy.context(lm=scripted, adapter=dspy.JSONAdapter()):
        theirs = reference(n=4)
    assert [entry["body"]["messages"] for entry in fake_lm.requests] == scripted.calls
    assert dict(ours.items()) == dict(theirs.items())
    assert ours.trajectory["code_output_0"] == "[24]"
