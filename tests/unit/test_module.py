"""Module base: parameter discovery with DSPy's names, copies, LMs, running."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dspyq.core.chain_of_thought import ChainOfThought
from dspyq.core.context import context, current
from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.core.predict import Predict
from dspyq.errors import ConfigurationError
from dspyq.lm import LM


class RewriteThenAnswer(Module):
    def __init__(self) -> None:
        super().__init__()
        self.rewrite = Predict("question -> search_query")
        self.answer = ChainOfThought("question, search_query -> answer")


class Containers(Module):
    def __init__(self) -> None:
        super().__init__()
        self.hops = [Predict("q -> a"), ChainOfThought("q -> a")]
        self.by_name = {"first": Predict("q -> a")}
        self.inner = RewriteThenAnswer()


class NoSuperInit(Module):
    def __init__(self) -> None:  # deliberately skips super().__init__()
        self.step = Predict("q -> a")


def test_named_parameters_use_dspy_paths():
    program = Containers()
    names = [name for name, _ in program.named_parameters()]
    assert names == [
        "hops[0]",
        "hops[1].predict",
        "by_name['first']",
        "inner.rewrite",
        "inner.answer.predict",
    ]
    assert [name for name, _ in program.named_predictors()] == names
    assert len(program.predictors()) == 5


def test_a_predict_names_itself_self():
    predict = Predict("q -> a")
    assert [name for name, _ in predict.named_parameters()] == ["self"]


def test_shared_predictor_is_listed_once():
    program = RewriteThenAnswer()
    program.alias = program.rewrite
    assert [name for name, _ in program.named_parameters()] == ["rewrite", "answer.predict"]


def test_compiled_submodules_are_frozen():
    program = Containers()
    program.inner._compiled = True
    names = [name for name, _ in program.named_parameters()]
    assert not any(name.startswith("inner.") for name in names)


def test_named_sub_modules_walks_breadth_first():
    program = RewriteThenAnswer()
    names = [name for name, _ in program.named_sub_modules()]
    assert names == ["self", "self.rewrite", "self.answer", "self.answer.predict"]
    only_cot = [name for name, _ in program.named_sub_modules(type_=ChainOfThought)]
    assert only_cot == ["self.answer"]


def test_module_without_super_init_still_works():
    program = NoSuperInit()
    assert [name for name, _ in program.named_predictors()] == ["step"]
    assert program.deepcopy().step is not program.step


def test_deepcopy_is_independent():
    program = RewriteThenAnswer()
    program.rewrite.demos = [Example(question="q", search_query="s")]
    clone = program.deepcopy()
    assert clone.rewrite is not program.rewrite
    clone.rewrite.demos.append(Example(question="q2", search_query="s2"))
    assert len(program.rewrite.demos) == 1
    assert clone.dump_state()["rewrite"]["demos"][0] == {"question": "q", "search_query": "s"}


def test_reset_copy_clears_learned_state_only_on_the_copy():
    program = RewriteThenAnswer()
    program.rewrite.demos = [Example(question="q", search_query="s")]
    program.rewrite.lm = LM("openai/gpt-4o-mini", api_base="http://127.0.0.1:9/v1")
    fresh = program.reset_copy()
    assert fresh.rewrite.demos == [] and fresh.rewrite.lm is None
    assert len(program.rewrite.demos) == 1 and program.rewrite.lm is not None


def test_set_lm_and_get_lm():
    program = RewriteThenAnswer()
    assert program.get_lm() is None
    lm = LM("openai/gpt-4o-mini", api_base="http://127.0.0.1:9/v1")
    program.set_lm(lm)
    assert program.get_lm() is lm
    assert all(p.lm is lm for p in program.predictors())
    program.rewrite.lm = LM("openai/gpt-4o", api_base="http://127.0.0.1:9/v1")
    with pytest.raises(ConfigurationError, match="Multiple LMs"):
        program.get_lm()


def test_map_named_predictors_replaces_in_place():
    program = Containers()
    replaced: list[Predict] = []

    def swap(predictor: Predict) -> Predict:
        new = Predict(predictor.signature.with_instructions("new"))
        replaced.append(new)
        return new

    program.map_named_predictors(swap)
    assert program.predictors() == replaced
    assert all(p.signature.instructions == "new" for p in program.predictors())


def test_call_runs_forward_and_acall_runs_it_with_the_callers_config():
    class Echo(Module):
        def forward(self, text: str) -> Any:
            return (text, current().get("tag"))

    echo = Echo()
    assert echo(text="hi") == ("hi", None)
    with context(tag="outer"):
        assert asyncio.run(echo.acall(text="hi")) == ("hi", "outer")


def test_forward_must_be_defined():
    with pytest.raises(NotImplementedError):
        Module()()


def test_parameters_are_found_one_container_deep_as_in_dspy() -> None:
    """A list or dict of predictors holds parts; programs kept inside records (a list of
    dicts, as SIMBA's ``candidate_programs``) are not parts, in DSPy either."""
    import dspy

    def build(module_type: Any, predict: Any) -> Any:
        program = module_type()
        program.steps = [predict("q -> a"), predict("q -> b")]
        program.named = {"x": predict("q -> c")}
        program.records = [{"program": predict("q -> d")}]
        program.nested = [[predict("q -> e")]]
        return program

    ours = [name for name, _ in build(Module, Predict).named_predictors()]
    theirs = [name for name, _ in build(dspy.Module, dspy.Predict).named_predictors()]
    assert ours == theirs == ["steps[0]", "steps[1]", "named['x']"]
