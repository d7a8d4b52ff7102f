"""BetterTogether against DSPy's: the same prompt and weight optimizers in the same
sequence, on the fake server; the same candidates, scores, training file and program."""

from __future__ import annotations

import logging
from typing import Any

import dspy
import pytest
from finetune_server import SUMS, finetuning, jobs, our_lm, structure, their_lm, uploads

from dspyq.core.context import context
from dspyq.core.example import Example
from dspyq.core.predict import Predict
from dspyq.errors import ConfigurationError
from dspyq.metrics import answer_exact_match
from dspyq.optimize.better_together import BetterTogether
from dspyq.optimize.bootstrap_finetune import BootstrapFinetune
from dspyq.optimize.random_search import BootstrapFewShotWithRandomSearch
from dspyq.testing import FakeLMServer

__all__ = ["finetuning"]  # the fixture, imported for the tests here

RS_OPTIONS = {"num_candidate_programs": 2, "max_bootstrapped_demos": 2, "max_labeled_demos": 2}
COMPILE = {"seed": 3, "valset_ratio": 0.25}


def run(pkg: Any, server: FakeLMServer, **compile_options: Any) -> Any:
    ours = pkg is not dspy
    metric = answer_exact_match if ours else dspy.evaluate.answer_exact_match
    rs = BootstrapFewShotWithRandomSearch if ours else dspy.BootstrapFewShotWithRandomSearch
    finetune = BootstrapFinetune if ours else dspy.BootstrapFinetune
    together = BetterTogether if ours else dspy.BetterTogether
    example = Example if ours else dspy.Example
    student = (Predict if ours else dspy.Predict)("question -> answer")
    student.set_lm(our_lm(server) if ours else their_lm(server))
    trainset = [example(question=q, answer=a).with_inputs("question") for q, a in SUMS]
    optimizer = together(metric, p=rs(metric=metric, **RS_OPTIONS), w=finetune(metric=metric))
    return optimizer.compile(student, trainset=trainset, **{**COMPILE, **compile_options})


def restored_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "incorrectly reset" in r.getMessage()]


def candidates(program: Any) -> list[Any]:
    return [
        (c["strategy"], c["score"], structure(c["program"])) for c in program.candidate_programs
    ]


@pytest.mark.parametrize("options", [{}, {"strategy": "w -> p", "valset_ratio": 0}])
def test_better_together_runs_dspys_sequence(
    finetuning: FakeLMServer, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    finetuning.configure(finetune_min_examples=5)  # a quarter of the sums is the valset
    their_logger = logging.getLogger("dspy")  # DSPy's loggers do not propagate
    their_logger.addHandler(caplog.handler)
    try:
        theirs = run(dspy, finetuning, **options)
    finally:
        their_logger.removeHandler(caplog.handler)
    their_files = uploads(finetuning)
    their_warnings = restored_warnings(caplog)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dspyq"):
        ours = run(None, finetuning, **options)
    # BootstrapRS returns a reset copy, as DSPy's: the LMs are put back, with DSPy's warning
    assert restored_warnings(caplog) == their_warnings
    assert len(their_warnings) == (2 if not options else 0)
    our_files = uploads(finetuning)[len(their_files) :]
    assert our_files == their_files and len(our_files) == 1
    assert candidates(ours) == candidates(theirs)
    assert structure(ours) == structure(theirs)
    assert ours.flag_compilation_error_occurred is theirs.flag_compilation_error_occurred
    weighted = [c["program"] for c in ours.candidate_programs if c["strategy"].endswith("w")]
    assert weighted[0].lm.model.startswith("ft:gpt-4o-mini:dspyq::")
    assert len(jobs(finetuning)) == 2


def test_a_failed_step_stops_the_sequence_and_keeps_the_best_so_far(
    finetuning: FakeLMServer,
) -> None:
    finetuning.configure(finetune_min_examples=1000)  # the fine-tune fails validation
    theirs = run(dspy, finetuning)
    ours = run(None, finetuning)
    assert ours.flag_compilation_error_occurred is theirs.flag_compilation_error_occurred is True
    assert candidates(ours) == candidates(theirs)
    assert sorted(c["strategy"] for c in ours.candidate_programs) == ["", "p"]


def errors(pkg: Any, server: FakeLMServer, **compile_options: Any) -> str:
    with pytest.raises((ValueError, ConfigurationError, TypeError)) as caught:
        run(pkg, server, **compile_options)
    return str(caught.value)


@pytest.mark.parametrize(
    "options",
    [
        {"strategy": "p -> x"},
        {"strategy": " "},
        {"valset_ratio": 1.0},
        {"trainset": []},
        {"optimizer_compile_args": {"q": {}}},
        {"optimizer_compile_args": {"p": {"student": None}}},
        {"optimizer_compile_args": {"w": {"valset": []}}},
    ],
)
def test_errors_match_dspys(finetuning: FakeLMServer, options: dict[str, Any]) -> None:
    if "trainset" in options:
        their_student = dspy.Predict("q -> a")
        their_student.set_lm(their_lm(finetuning))
        with pytest.raises(ValueError, match="trainset cannot be empty"):
            dspy.BetterTogether(dspy.evaluate.answer_exact_match).compile(
                their_student, trainset=[]
            )
        with pytest.raises(ConfigurationError, match="trainset cannot be empty"):
            student = Predict("q -> a")
            student.set_lm(our_lm(finetuning))
            BetterTogether(answer_exact_match).compile(student, trainset=[])
        return
    assert errors(None, finetuning, **options) == errors(dspy, finetuning, **options)


def test_the_student_needs_lms_and_optimizers_must_be_teleprompters(
    finetuning: FakeLMServer,
) -> None:
    with pytest.raises(ValueError) as theirs:
        dspy.BetterTogether(dspy.evaluate.answer_exact_match).compile(
            dspy.Predict("q -> a"), trainset=[dspy.Example(q="1")]
        )
    with context(lm=our_lm(finetuning)), pytest.raises(ConfigurationError) as ours:
        BetterTogether(answer_exact_match).compile(Predict("q -> a"), trainset=[Example(q="1")])
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(TypeError, match="Optimizer 'p' must be a Teleprompter, got str"):
        BetterTogether(answer_exact_match, p="nope")  # type: ignore[arg-type]


def test_constructor_parameters_stay_attributes_and_runs_carry_them() -> None:
    from dspyq.lm.lm import LM
    from dspyq.tasks.optimization import optimizer_config
    from dspyq.tasks.optimizer_settings import rebuild

    finetune = BootstrapFinetune(
        answer_exact_match, False, {"n_epochs": 1}, None, True, 4
    )  # fmt: skip
    assert (finetune.metric, finetune.multitask, finetune.train_kwargs) == (
        answer_exact_match, False, {"n_epochs": 1},
    )  # fmt: skip
    assert (finetune.adapter, finetune.exclude_demos, finetune.num_threads) == (None, True, 4)
    together = BetterTogether(answer_exact_match)
    assert together.metric is answer_exact_match
    assert sorted(together.optimizers) == ["p", "w"]
    assert isinstance(together.optimizers["w"], BootstrapFinetune)

    # A worker rebuilds both from the settings a run carries (the metric travels apart).
    def make_lm(model: str, options: dict[str, Any]) -> LM:
        return LM(model, **options)

    settings = optimizer_config(finetune, {})
    assert settings == {
        "multitask": False, "train_kwargs": {"n_epochs": 1}, "adapter": None,
        "exclude_demos": True, "num_threads": 4,
    }  # fmt: skip
    rebuilt = rebuild("BootstrapFinetune", settings, metric=answer_exact_match, make_lm=make_lm)
    assert isinstance(rebuilt, BootstrapFinetune) and rebuilt.get_params() == finetune.get_params()
    carried = optimizer_config(together, {"strategy": "p -> w"})
    again = rebuild("BetterTogether", carried, metric=answer_exact_match, make_lm=make_lm)
    assert isinstance(again, BetterTogether) and sorted(again.optimizers) == ["p", "w"]
    assert isinstance(again.optimizers["w"], BootstrapFinetune)
    assert again.optimizers["w"].metric is answer_exact_match  # nested: by import path
