"""BootstrapFinetune and LM.finetune against DSPy's, both fine-tuning on the fake server.

The server keeps every uploaded training file, so the bytes each side sent are
compared directly (see ``finetune_server`` for the setup).
"""

from __future__ import annotations

import re
from typing import Any

import dspy
import pytest
from finetune_server import SUMS, WRONG, finetuning, jobs, our_lm, structure, their_lm, uploads

from dspyq.core.context import context
from dspyq.core.example import Example
from dspyq.core.predict import Predict
from dspyq.errors import ConfigurationError
from dspyq.lm.finetune import TrainDataFormat, TrainingJob, jsonl_bytes
from dspyq.lm.lm import LM
from dspyq.metrics import answer_exact_match
from dspyq.optimize.bootstrap_finetune import BootstrapFinetune
from dspyq.testing import FakeLMServer

__all__ = ["finetuning"]  # the fixture, imported for the tests here


def run_theirs(server: FakeLMServer, **options: Any) -> Any:
    student = dspy.ChainOfThought("question -> answer")
    student.set_lm(their_lm(server))
    trainset = [dspy.Example(question=q, answer=a).with_inputs("question") for q, a in SUMS]
    optimizer = dspy.BootstrapFinetune(metric=dspy.evaluate.answer_exact_match, **options)
    return optimizer.compile(student, trainset=trainset)


def run_ours(server: FakeLMServer, **options: Any) -> Any:
    from dspyq.core.chain_of_thought import ChainOfThought

    student = ChainOfThought("question -> answer")
    student.set_lm(our_lm(server))
    trainset = [Example(question=q, answer=a).with_inputs("question") for q, a in SUMS]
    optimizer = BootstrapFinetune(metric=answer_exact_match, **options)
    return optimizer.compile(student, trainset=trainset)


@pytest.mark.parametrize("options", [{}, {"train_kwargs": {"n_epochs": 2}, "exclude_demos": True}])
def test_bootstrap_finetune_uploads_dspys_bytes_and_builds_its_program(
    finetuning: FakeLMServer, options: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    theirs = run_theirs(finetuning, **options)
    their_printed = capsys.readouterr().out
    their_structure = structure(theirs)
    (their_file,) = uploads(finetuning)
    (their_job,) = jobs(finetuning)

    ours = run_ours(finetuning, **options)
    our_printed = capsys.readouterr().out
    (our_file,) = uploads(finetuning)[1:]
    (our_job,) = jobs(finetuning)[1:]

    assert our_file == their_file
    assert our_file.count(b"\n") == len(SUMS) - len(WRONG)
    assert (our_job.model, our_job.hyperparameters) == (their_job.model, their_job.hyperparameters)
    assert structure(ours) == their_structure
    assert ours.predict.lm.model == f"ft:gpt-4o-mini:dspyq::{our_job.id}"
    assert getattr(ours, "_compiled", False) and theirs._compiled
    assert provider_lines(our_printed) == provider_lines(their_printed)
    # the fine-tuned model answers, on both sides
    assert ours(question="2+5").answer == theirs(question="2+5").answer == "7"


def provider_lines(printed: str) -> list[str]:
    """The provider's progress lines with ids, paths and times made generic; the job's
    events are left out (how many a poll sees depends on timing)."""
    event = re.compile(r"\[OpenAI Provider\] \d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
    lines = [line for line in printed.splitlines() if line.startswith("[OpenAI Provider]")]
    lines = [re.sub(r"ftjob-\w+", "JOB", line) for line in lines if not event.match(line)]
    lines = [re.sub(r"saved to .*", "saved to PATH", line) for line in lines]
    return [re.sub(r"remaining is: .*", "remaining is: DELTA", line) for line in lines]


def test_lm_finetune_returns_a_job_whose_result_is_the_finetuned_lm(
    finetuning: FakeLMServer,
) -> None:
    data = [
        {"messages": [{"role": "user", "content": "é?"}, {"role": "assistant", "content": "ü"}]}
    ]
    job = our_lm(finetuning).finetune(data * 10, TrainDataFormat.CHAT, {"n_epochs": 1})
    assert isinstance(job, TrainingJob)
    finetuned = job.result(timeout=20)
    assert isinstance(finetuned, LM) and finetuned.model.startswith("ft:gpt-4o-mini:dspyq::")
    assert uploads(finetuning) == [jsonl_bytes(data * 10)]
    assert job.status() == "succeeded"
    finetuning.answer("done")
    assert finetuned("hi") == ["done"]


def test_jsonl_bytes_equal_dspys_writer(tmp_path: Any) -> None:
    from dspy.clients.utils_finetune import write_lines

    data = [{"messages": [{"role": "system", "content": 'ä "q" \n\t/\u2028'}]}, {"k": [1, 2.5]}]
    write_lines(tmp_path / "d.jsonl", data)
    assert jsonl_bytes(data) == (tmp_path / "d.jsonl").read_bytes()


def test_a_failed_finetune_is_the_jobs_result_and_is_raised_by_compile(
    finetuning: FakeLMServer,
) -> None:
    finetuning.configure(finetune_min_examples=100)  # validation refuses the file
    job = our_lm(finetuning).finetune([{"messages": []}], "chat")
    error = job.result(timeout=20)
    assert isinstance(error, Exception) and "Job status is TrainingStatus.failed" in str(error)
    with pytest.raises(Exception, match=r"Must be TrainingStatus\.succeeded"):
        run_ours(finetuning)


def test_errors_match_dspys(finetuning: FakeLMServer) -> None:
    with pytest.raises(ConfigurationError, match="does not support fine-tuning"):
        LM("anthropic/claude", api_base=finetuning.anthropic_base).finetune([], "chat")
    job = our_lm(finetuning).finetune([], TrainDataFormat.GRPO_CHAT)
    assert str(job.result(timeout=5)) == (
        "OpenAI does not support the data format TrainDataFormat.GRPO_CHAT."
    )
    student = Predict("question -> answer")
    trainset = [Example(question="1+1", answer="2").with_inputs("question")]
    with context(lm=our_lm(finetuning)), pytest.raises(ConfigurationError) as ours:
        BootstrapFinetune().compile(student, trainset=trainset)
    their_student = dspy.Predict("question -> answer")
    with dspy.context(lm=their_lm(finetuning)), pytest.raises(ValueError) as theirs:
        dspy.BootstrapFinetune().compile(
            their_student, trainset=[dspy.Example(question="1+1").with_inputs("question")]
        )
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(ConfigurationError, match="empty devset"):
        BootstrapFinetune().compile(student, trainset=[])


def test_a_teacher_must_match_the_student_as_in_dspy() -> None:
    from dspyq.core.chain_of_thought import ChainOfThought

    with pytest.raises(AssertionError) as ours:
        BootstrapFinetune().compile(
            Predict("q -> a"), trainset=[], teacher=ChainOfThought("q -> a")
        )
    with pytest.raises(AssertionError) as theirs:
        dspy.BootstrapFinetune().compile(
            dspy.Predict("q -> a"), trainset=[], teacher=dspy.ChainOfThought("q -> a")
        )
    assert str(ours.value) == str(theirs.value)
    shared = Predict("q -> a")
    with pytest.raises(AssertionError, match="share the following predictor"):
        BootstrapFinetune().compile(shared, trainset=[], teacher=shared)


def two_step(pkg: Any, lm: Any) -> Any:
    """A draft and a final answer, each its own predictor on one LM."""

    class TwoStep(pkg.Module):
        def __init__(self) -> None:
            super().__init__()
            self.draft = pkg.Predict("question -> answer")
            self.final = pkg.ChainOfThought("question -> answer")

        def forward(self, question: str) -> Any:
            self.draft(question=question)
            return self.final(question=question)

    program = TwoStep()
    program.set_lm(lm)
    return program


@pytest.mark.parametrize("multitask", [True, False])
def test_each_predictor_gets_dspys_data_per_task(finetuning: FakeLMServer, multitask: bool) -> None:
    import dspyq

    def compile_with(pkg: Any, lm: Any, metric: Any, example: Any) -> Any:
        trainset = [example(question=q, answer=a).with_inputs("question") for q, a in SUMS]
        optimizer = pkg.BootstrapFinetune(metric=metric, multitask=multitask, num_threads=2)
        return optimizer.compile(two_step(pkg, lm), trainset=trainset)

    theirs = compile_with(
        dspy, their_lm(finetuning), dspy.evaluate.answer_exact_match, dspy.Example
    )
    their_files = uploads(finetuning)
    ours = compile_with(dspyq, our_lm(finetuning), answer_exact_match, Example)
    our_files = uploads(finetuning)[len(their_files) :]
    assert sorted(our_files) == sorted(their_files)  # the jobs upload concurrently
    assert len(our_files) == (1 if multitask else 2)
    records = (len(SUMS) - len(WRONG)) * (2 if multitask else 1)
    assert [f.count(b"\n") for f in our_files] == [records] * len(our_files)
    assert structure(ours) == structure(theirs)
    models = {p.lm.model for p in ours.predictors()}
    assert len(models) == (1 if multitask else 2)


def test_too_few_threads_for_the_jobs_is_dspys_error(finetuning: FakeLMServer) -> None:
    import dspyq

    trainset = [Example(question=q, answer=a).with_inputs("question") for q, a in SUMS]
    optimizer = BootstrapFinetune(metric=answer_exact_match, multitask=False, num_threads=1)
    with pytest.raises(ConfigurationError) as ours:
        optimizer.compile(two_step(dspyq, our_lm(finetuning)), trainset=trainset)
    their_set = [dspy.Example(question=q, answer=a).with_inputs("question") for q, a in SUMS]
    theirs_opt = dspy.BootstrapFinetune(metric=dspy.evaluate.answer_exact_match, multitask=False)
    theirs_opt.num_threads = 1
    with pytest.raises(ValueError) as theirs:
        theirs_opt.compile(two_step(dspy, their_lm(finetuning)), trainset=their_set)
    assert str(ours.value) == str(theirs.value)


def test_the_lms_finetuning_settings_are_dspys(finetuning: FakeLMServer) -> None:
    """``finetuning_model`` and ``train_kwargs`` pick what is trained, and are saved."""
    lm = LM(
        "openai/gpt-4o-mini",
        api_base=finetuning.openai_base,
        api_key="sk-test",
        finetuning_model="openai/gpt-4.1-mini",
        train_kwargs={"n_epochs": 4},
    )
    assert "train_kwargs" not in lm.kwargs and lm.copy().train_kwargs == {"n_epochs": 4}
    data = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]
    finetuned = lm.finetune(data * 10, "chat").result(timeout=20)
    (job,) = jobs(finetuning)
    assert (job.model, job.hyperparameters) == ("gpt-4.1-mini", {"n_epochs": 4})
    assert finetuned.model == f"ft:gpt-4.1-mini:dspyq::{job.id}"
    theirs = dspy.LM("openai/gpt-4o-mini", finetuning_model="x", train_kwargs={"n_epochs": 4})
    ours = LM("openai/gpt-4o-mini", api_base="http://h/v1", finetuning_model="x")
    ours.train_kwargs = {"n_epochs": 4}
    saved = ours.dump_state()
    keys = ("finetuning_model", "launch_kwargs", "train_kwargs")
    assert {k: saved[k] for k in keys} == {k: theirs.dump_state()[k] for k in keys}
    loaded = LM.from_state(saved)
    assert (loaded.finetuning_model, loaded.train_kwargs) == ("x", {"n_epochs": 4})


def test_cancelling_a_job_cancels_it_at_the_provider(finetuning: FakeLMServer) -> None:
    import time

    finetuning.configure(finetune_seconds=30)
    data = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]
    job = our_lm(finetuning).finetune(data * 10, "chat")
    deadline = time.monotonic() + 10
    while job.provider_job_id is None and time.monotonic() < deadline:
        time.sleep(0.01)
    (server_job,) = jobs(finetuning)
    assert job.cancel() is True
    assert server_job.status(time.time()) == "cancelled"
    assert uploads(finetuning) == []  # the training file is deleted
    job.thread.join(timeout=10)
    assert not job.thread.is_alive()
