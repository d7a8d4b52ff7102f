"""Programs cross the queue as JSON: a ProgramSpec rebuilds the same program elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import program_fixtures as fx
import pytest

from dspyq.adapters import ChatAdapter
from dspyq.core.chain_of_thought import ChainOfThought
from dspyq.core.context import context
from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.core.multihop import MultiHopQA
from dspyq.core.predict import Predict
from dspyq.core.program import ProgramSpec, program_from_spec, program_to_spec
from dspyq.core.react import ReAct, Tool
from dspyq.core.refine import BestOfN, Refine
from dspyq.core.signature import InputField
from dspyq.lm import LM
from dspyq.testing.fake_lm import FakeLMServer

FIXTURES_DIR = Path(fx.__file__).resolve().parent


def learn(program: Module) -> Module:
    """What an optimizer leaves behind: demos and new instructions on every predictor."""
    for index, (name, predictor) in enumerate(program.named_predictors()):
        fields = {field: f"{field} of demo {index}" for field in predictor.signature.fields}
        predictor.demos = [Example(**fields, augmented=True)]
        predictor.signature = predictor.signature.with_instructions(f"Tuned {name}: be brief.")
    return program


PROGRAMS: dict[str, Callable[[], Module]] = {
    "predict": lambda: Predict("question, context: list[str] -> answer: int", temperature=0.3),
    "chain_of_thought": lambda: ChainOfThought(fx.AnswerWithContext, max_tokens=200),
    "react": lambda: ReAct(
        "question -> answer",
        tools=[fx.search, Tool(fx.lookup_year, arg_desc={"title": "the film's title"})],
        max_iters=4,
    ),
    "best_of_n": lambda: BestOfN(
        module=ChainOfThought("question -> answer"),
        N=3,
        reward_fn=fx.short_answer_reward,
        threshold=1.0,
    ),
    "refine": lambda: Refine(fx.RAG(k=1), 2, fx.short_answer_reward, threshold=0.5, fail_count=1),
    "multihop": lambda: MultiHopQA(max_hops=2),
    "user_module": lambda: fx.RAG(k=1, options={"temperature": 0.2, "$dspyq": "kept"}),
    "nested_list_of_modules": lambda: fx.Ensemble(
        [fx.RAG(), Predict("question -> answer")], label="pair"
    ),
    "positional_only_and_varargs": lambda: fx.Concat("first", "second", "third"),
}


def sample_inputs(predictor: Predict) -> dict[str, Any]:
    return {name: f"<{name}>" for name in predictor.signature.input_fields}


def prompts(program: Module) -> dict[str, Any]:
    """The chat messages each predictor would send, demos and instructions included."""
    adapter = ChatAdapter()
    return {
        name: adapter.format(
            predictor.signature,
            [dict(d.items()) for d in predictor.demos],
            sample_inputs(predictor),
        )
        for name, predictor in program.named_predictors()
    }


def assert_same_program(original: Module, rebuilt: Module) -> None:
    assert type(rebuilt) is type(original)
    assert rebuilt is not original
    assert rebuilt.dump_state() == original.dump_state()
    pairs = zip(original.named_predictors(), rebuilt.named_predictors(), strict=True)
    for (name, mine), (their_name, theirs) in pairs:
        assert name == their_name
        assert theirs.signature.equals(mine.signature), name
        assert theirs.config == mine.config, name
    assert prompts(rebuilt) == prompts(original)


@pytest.mark.parametrize("name", PROGRAMS)
def test_spec_rebuilds_the_same_program_with_its_learned_state(name):
    original = learn(PROGRAMS[name]())

    spec = program_to_spec(original)
    wire = json.loads(spec.model_dump_json())  # only JSON crosses the queue
    rebuilt = program_from_spec(wire, allowed_prefixes=["program_fixtures"])

    assert_same_program(original, rebuilt)
    assert program_to_spec(rebuilt) == spec


def test_spec_names_the_class_and_records_the_arguments_given_as_json():
    spec = program_to_spec(fx.RAG("context, question -> answer", retriever=fx.search))

    assert spec.kind == "program_fixtures:RAG"
    assert spec.args == []
    # Positional arguments are recorded by name; defaults stay the worker's.
    assert spec.init["signature"] == "context, question -> answer"
    assert "k" not in spec.init
    assert spec.init["retriever"] == {"$dspyq": "import", "path": "program_fixtures:search"}
    assert [f["name"] for f in spec.signatures["respond.predict"]["fields"]] == [
        "context",
        "question",
        "reasoning",
        "answer",
    ]
    assert set(spec.state) == {"rewrite", "respond.predict"}
    assert spec.dspyq_version


def test_arguments_are_encoded_by_type():
    react = ReAct(fx.AnswerWithContext, tools=[Tool(fx.lookup_year, name="year")])
    best = BestOfN(module=Predict("q -> a"), N=2, reward_fn=fx.short_answer_reward, threshold=1)

    react_init = program_to_spec(react).init
    best_init = program_to_spec(best).init

    assert react_init["signature"]["$dspyq"] == "signature"
    assert react_init["signature"]["json"] == fx.AnswerWithContext.to_json()
    (tool,) = react_init["tools"]
    assert tool == {
        "$dspyq": "tool",
        "func": "program_fixtures:lookup_year",
        "name": "year",
        "desc": "The release year of a film.",
        "arg_desc": {},
    }
    assert best_init["module"]["$dspyq"] == "program"
    assert best_init["module"]["spec"]["kind"] == "dspyq.core.predict:Predict"
    assert best_init["reward_fn"] == {
        "$dspyq": "import",
        "path": "program_fixtures:short_answer_reward",
    }


def test_rebuilt_tools_and_reward_functions_are_the_originals():
    react = program_from_spec(program_to_spec(PROGRAMS["react"]()))
    best = program_from_spec(program_to_spec(PROGRAMS["best_of_n"]()))

    assert isinstance(react, ReAct)
    assert react.tools["search"].func is fx.search
    assert react.tools["lookup_year"].arg_desc == {"title": "the film's title"}
    assert str(react.tools["lookup_year"]) == str(
        Tool(fx.lookup_year, arg_desc={"title": "the film's title"})
    )
    assert isinstance(best, BestOfN)
    assert best.reward_fn({}, Example(answer="Steven Spielberg")) == 1.0


def test_copies_of_a_program_keep_their_constructor_arguments():
    original = learn(fx.RAG(k=1))

    copy = original.deepcopy()

    assert program_to_spec(copy) == program_to_spec(original)
    assert [name for name, _ in copy.named_parameters()] == ["rewrite", "respond.predict"]


def test_rebuilt_program_sends_the_same_requests(fake_lm: FakeLMServer):
    fake_lm.answer_fields({"query": "jaws"}, match="Tuned rewrite")
    fake_lm.answer_fields(
        {
            "reasoning": "The passage says so.",
            "answer": "Steven Spielberg",
            "citation": {"source": "jaws", "year": 1975},
        },
        match="Tuned respond",
    )
    lm = LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="test", cache=False)
    original = learn(fx.RAG(k=1))
    rebuilt = program_from_spec(json.loads(program_to_spec(original).model_dump_json()))

    with context(lm=lm):
        first = original(question="Who directed Jaws?")
        sent_by_original = [entry["body"] for entry in fake_lm.requests]
        fake_lm.clear_requests()
        second = rebuilt(question="Who directed Jaws?")
        sent_by_rebuilt = [entry["body"] for entry in fake_lm.requests]

    assert len(sent_by_original) == 2
    assert sent_by_rebuilt == sent_by_original
    assert second.answer == first.answer == "Steven Spielberg"
    assert second.citation == first.citation == fx.Citation(source="jaws", year=1975)


WORKER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from dspyq.adapters import ChatAdapter
    from dspyq.core.program import program_from_spec

    program = program_from_spec(json.load(sys.stdin), allowed_prefixes=["program_fixtures"])
    predictor = program.respond.predict
    messages = ChatAdapter().format(
        predictor.signature, [dict(d.items()) for d in predictor.demos], {"context": ["c"], "question": "q"}
    )
    print(json.dumps({
        "class": type(program).__module__ + ":" + type(program).__qualname__,
        "state": program.dump_state(),
        "messages": messages,
    }))
    """
)


def run_python(script: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FIXTURES_DIR), *sys.path])}
    return subprocess.run(
        [sys.executable, "-c", script],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_a_worker_process_rebuilds_the_program_from_json_alone():
    original = learn(fx.RAG(k=1))
    predictor = original.respond.predict

    result = run_python(WORKER_SCRIPT, stdin=program_to_spec(original).model_dump_json())

    assert result.returncode == 0, result.stderr
    worker = json.loads(result.stdout)
    assert worker["class"] == "program_fixtures:RAG"
    assert worker["state"] == original.dump_state()
    assert worker["messages"] == ChatAdapter().format(
        predictor.signature,
        [dict(d.items()) for d in predictor.demos],
        {"context": ["c"], "question": "q"},
    )


def test_a_program_class_defined_in_main_is_refused_with_a_fix():
    script = textwrap.dedent(
        """
        import dspyq
        from dspyq.core.program import program_to_spec

        class Script(dspyq.Module):
            def __init__(self):
                super().__init__()
                self.predict = dspyq.Predict("question -> answer")

        try:
            program_to_spec(Script())
        except dspyq.InputError as error:
            print(error.message)
        """
    )

    result = run_python(script)

    assert result.returncode == 0, result.stderr
    assert "Script" in result.stdout
    assert "__main__" in result.stdout
    assert "importable module" in result.stdout


def test_spec_without_state_builds_the_program_as_constructed():
    spec = ProgramSpec(
        kind="dspyq.core.chain_of_thought:ChainOfThought",
        init={"signature": "question -> answer", "temperature": 0.1},
    )

    program = program_from_spec(spec)

    assert isinstance(program, ChainOfThought)
    assert program.dump_state() == ChainOfThought("question -> answer").dump_state()
    assert program.predict.config == {"temperature": 0.1}


def test_signature_edits_made_after_construction_cross_with_the_spec():
    original = Predict("question -> answer")
    original.signature = original.signature.with_updated_fields("answer", type_=int).append(
        "hint", InputField(desc="a nudge")
    )

    rebuilt = program_from_spec(json.loads(program_to_spec(original).model_dump_json()))

    assert isinstance(rebuilt, Predict)
    assert rebuilt.signature.equals(original.signature)
    assert rebuilt.signature.output_fields["answer"].annotation is int
    assert list(rebuilt.signature.input_fields) == ["question", "hint"]
