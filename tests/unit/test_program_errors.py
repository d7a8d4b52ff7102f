"""What cannot cross the queue is refused early and clearly; bad specs fail as dspyq errors."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import program_fixtures as fx
import pytest

from dspyq.core.chain_of_thought import ChainOfThought
from dspyq.core.imports import check_import_path, resolve_import
from dspyq.core.multihop import MultiHopQA
from dspyq.core.predict import Predict
from dspyq.core.program import ProgramSpec, program_from_spec, program_to_spec
from dspyq.core.react import ReAct, Tool
from dspyq.core.refine import BestOfN
from dspyq.core.signature import OutputField
from dspyq.errors import ConfigurationError, InputError, StateError
from dspyq.settings import reload_settings

# --- program_to_spec refuses what a worker could not rebuild ------------------------------


def test_a_lambda_tool_is_refused_naming_the_argument():
    agent = ReAct("question -> answer", tools=[fx.search, lambda query: query])

    with pytest.raises(InputError) as caught:
        program_to_spec(agent)

    assert "`tools[1]` of ReAct" in caught.value.message
    assert "lambda" in caught.value.message
    assert "module-level function" in caught.value.message


def test_a_closure_reward_function_is_refused_naming_the_argument():
    target = 3

    def close_enough(inputs, prediction):
        return float(len(prediction.answer) <= target)

    best = BestOfN(module=Predict("q -> answer"), N=2, reward_fn=close_enough, threshold=1.0)

    with pytest.raises(InputError) as caught:
        program_to_spec(best)

    assert "`reward_fn` of BestOfN" in caught.value.message
    assert "inside a function" in caught.value.message
    assert "module-level function" in caught.value.message


def test_a_method_of_a_local_object_is_refused():
    class Searcher:
        def search(self, query: str) -> str:
            """Search."""
            return query

    agent = ReAct("question -> answer", tools=[Tool(Searcher().search)])

    with pytest.raises(InputError) as caught:
        program_to_spec(agent)

    assert "`tools[0]` of ReAct" in caught.value.message
    assert "module-level function" in caught.value.message


def test_a_method_of_a_module_level_class_instance_is_refused():
    agent = ReAct("question -> answer", tools=[Tool(fx.RAG().forward, name="rag")])

    with pytest.raises(InputError) as caught:
        program_to_spec(agent)

    assert "not reachable at its import path 'program_fixtures:RAG.forward'" in (
        caught.value.message
    )


def test_a_program_class_defined_inside_a_function_is_refused():
    with pytest.raises(InputError) as caught:
        program_to_spec(fx.make_local_program())

    assert "Program class Local" in caught.value.message
    assert "inside a function" in caught.value.message
    assert "importable module" in caught.value.message


def test_a_value_that_is_not_json_is_refused_naming_where_it_sits():
    program = fx.RAG(options={"stop": ["\n"], "seed": object()})

    with pytest.raises(InputError) as caught:
        program_to_spec(program)

    assert "`options['seed']` of RAG" in caught.value.message
    assert "object" in caught.value.message


def test_a_pydantic_field_argument_is_refused_naming_it():
    program = ChainOfThought("question -> answer", rationale_field=OutputField(desc="think"))

    with pytest.raises(InputError) as caught:
        program_to_spec(program)

    assert "`rationale_field` of ChainOfThought" in caught.value.message


def test_a_tool_with_hand_written_args_is_refused():
    tool = Tool(fx.search, args={"query": {"type": "string"}})

    with pytest.raises(InputError) as caught:
        program_to_spec(ReAct("question -> answer", tools=[tool]))

    assert "overrides its args" in caught.value.message


# --- resolve_import -------------------------------------------------------------------------


@pytest.fixture
def canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An importable module that leaves a file behind when it is imported."""
    marker = tmp_path / "imported"
    (tmp_path / "canary_tools.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('yes')\n"
        "def ping() -> str:\n    return 'pong'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("canary_tools", None)


def test_a_path_outside_the_allowed_prefixes_is_refused_before_importing(canary: Path):
    with pytest.raises(ConfigurationError) as caught:
        resolve_import("canary_tools:ping", allowed_prefixes=["myapp"])

    assert not canary.exists()
    assert "canary_tools:ping" in caught.value.message
    assert "DSPYQ_ALLOWED_IMPORTS" in caught.value.message
    assert resolve_import("canary_tools:ping", allowed_prefixes=["canary_tools"])() == "pong"
    assert canary.exists()


def test_prefixes_match_whole_package_names():
    check_import_path("myapp.tools.web:search", allowed_prefixes=["myapp"])
    check_import_path("myapp:search", allowed_prefixes=["myapp"])
    with pytest.raises(ConfigurationError):
        check_import_path("myapp_evil:search", allowed_prefixes=["myapp"])


def test_dspyq_itself_is_always_allowed():
    assert resolve_import("dspyq.core.predict:Predict", allowed_prefixes=[]) is Predict


def test_an_allowed_module_cannot_be_used_to_reach_another_one():
    with pytest.raises(ConfigurationError, match="reaches into module 'logging'"):
        resolve_import("dspyq.core.module:logging.getLogger", allowed_prefixes=[])
    with pytest.raises(ConfigurationError, match="outside the allowed imports"):
        resolve_import("dspyq.core.program:json", allowed_prefixes=[])
    with pytest.raises(ConfigurationError, match="defined in 'dataclasses'"):
        resolve_import("dspyq.core.module:dataclass", allowed_prefixes=[])


@pytest.mark.parametrize(
    ("path", "error", "words"),
    [
        ("no_such_package_xyz.tools:search", ConfigurationError, "Is its package installed"),
        ("program_fixtures:missing_tool", ConfigurationError, "has no attribute 'missing_tool'"),
        ("program_fixtures.search", InputError, "malformed"),
        ("program_fixtures:<locals>.f", InputError, "malformed"),
    ],
)
def test_paths_that_do_not_resolve_raise_dspyq_errors_naming_them(path, error, words):
    with pytest.raises(error) as caught:
        resolve_import(path)

    assert path in caught.value.message
    assert words in caught.value.message


@pytest.fixture
def allowed_imports_setting() -> Iterator[None]:
    os.environ["DSPYQ_ALLOWED_IMPORTS"] = '["myapp"]'
    reload_settings()
    yield
    del os.environ["DSPYQ_ALLOWED_IMPORTS"]
    reload_settings()


def test_the_allowed_imports_setting_applies_when_no_prefixes_are_given(allowed_imports_setting):
    spec = program_to_spec(fx.RAG())

    with pytest.raises(ConfigurationError, match="program_fixtures:RAG"):
        program_from_spec(spec)
    assert isinstance(program_from_spec(spec, allowed_prefixes=["program_fixtures"]), fx.RAG)


def test_import_paths_inside_arguments_and_signatures_are_checked_too():
    tool_spec = program_to_spec(ReAct("question -> answer", tools=[fx.search]))
    typed_spec = program_to_spec(Predict(fx.AnswerWithContext))

    with pytest.raises(ConfigurationError, match="program_fixtures:search"):
        program_from_spec(tool_spec, allowed_prefixes=["myapp"])
    with pytest.raises(ConfigurationError, match="program_fixtures:Citation"):
        program_from_spec(typed_spec, allowed_prefixes=["myapp"])


# --- program_from_spec refuses specs that do not fit ----------------------------------------


def spec_dict(program) -> dict:
    return json.loads(program_to_spec(program).model_dump_json())


def test_an_unknown_kind_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match=r"myapp\.programs:RAG"):
        program_from_spec({"kind": "myapp.programs:RAG"})


def test_a_kind_that_is_not_a_module_is_refused():
    with pytest.raises(InputError, match="is not a dspyq Module class"):
        program_from_spec({"kind": "program_fixtures:NotAModule"})


def test_arguments_the_constructor_does_not_take_are_an_input_error():
    with pytest.raises(InputError) as caught:
        program_from_spec({"kind": "dspyq.core.predict:Predict", "init": {"sig": "a -> b"}})

    assert "dspyq.core.predict:Predict" in caught.value.message
    assert "sig" in caught.value.message
    assert not isinstance(caught.value.__cause__, InputError)


def test_arguments_the_constructor_rejects_are_an_input_error():
    with pytest.raises(InputError, match="max_hops must be at least 1"):
        program_from_spec({"kind": "dspyq.core.multihop:MultiHopQA", "init": {"max_hops": 0}})


def test_state_of_another_program_is_a_state_error():
    spec = spec_dict(Predict("question -> answer"))
    spec["state"] = ChainOfThought("question -> answer").dump_state()
    spec["signatures"] = {}

    with pytest.raises(StateError, match="predictor 'self' is malformed"):
        program_from_spec(spec)


def test_state_with_the_wrong_fields_is_a_state_error():
    spec = spec_dict(MultiHopQA())
    spec["state"]["synthesizer.predict"]["signature"]["fields"].pop()
    spec["signatures"] = {}

    with pytest.raises(StateError, match="Saved signature has 4 fields"):
        program_from_spec(spec)


def test_signatures_for_predictors_the_program_lacks_are_a_state_error():
    spec = spec_dict(Predict("question -> answer"))
    spec["signatures"]["ghost"] = spec["signatures"]["self"]

    with pytest.raises(StateError, match="ghost"):
        program_from_spec(spec)


@pytest.mark.parametrize(
    "spec",
    [
        {"init": {}},
        {"kind": "dspyq.core.predict:Predict", "extra": 1},
        {"kind": "dspyq.core.predict:Predict", "state": []},
    ],
)
def test_malformed_specs_are_input_errors(spec):
    with pytest.raises(InputError, match="Malformed program spec"):
        program_from_spec(spec)


@pytest.mark.parametrize(
    ("argument", "words"),
    [
        ({"$dspyq": "pickle", "data": "gAR9lC4="}, "Unknown encoded argument"),
        ({"$dspyq": "import"}, "lacks 'path'"),
        ({"$dspyq": "signature", "json": {"fields": "nope"}}, "cannot be rebuilt"),
    ],
)
def test_malformed_encoded_arguments_are_dspyq_errors(argument, words):
    spec = ProgramSpec(kind="dspyq.core.predict:Predict", init={"signature": argument})

    with pytest.raises(InputError, match=words):
        program_from_spec(spec)


def test_state_for_sub_programs_the_program_lacks_is_a_state_error():
    spec = spec_dict(ChainOfThought("question -> answer"))
    spec["state"]["ghost"] = spec["state"]["predict"]

    with pytest.raises(StateError, match=r"unexpected predictors \['ghost'\]"):
        program_from_spec(spec)
