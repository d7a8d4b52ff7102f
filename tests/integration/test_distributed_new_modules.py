"""XMLAdapter, MultiChainComparison and ProgramOfThought run by a real worker over Redis and SQL."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from adapter_programs import XMLQA, longest_answer

import dspyq
from dspyq.testing.cluster import Cluster, make_cluster

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent


@pytest.fixture
def cluster(tmp_path: Path, sqlite_url: str) -> Iterator[Cluster]:
    cluster, server = make_cluster(
        tmp_path, sqlite_url, PYTHONPATH=str(HERE), DSPYQ_ALLOWED_IMPORTS='["adapter_programs"]'
    )
    try:
        yield cluster
    finally:
        cluster.stop()
        server.stop()


def test_xml_adapter_program_runs_on_a_worker(cluster: Cluster) -> None:
    cluster.fake_lm.answer("<answer>\n42\n</answer>", match="wrapped in XML tags `<answer>`")
    cluster.start_worker("w1")
    job = cluster.client.submit(XMLQA(), lm="openai/m", question="6*7?")
    assert job.result(timeout=60).answer == 42
    prompt = cluster.fake_lm.requests[-1]["body"]["messages"][-1]["content"]
    assert prompt.startswith("<question>\n6*7?\n</question>")


def test_multi_chain_comparison_runs_on_a_worker(cluster: Cluster) -> None:
    cluster.fake_lm.answer_fields({"rationale": "two of three say 4", "answer": "4"})
    cluster.start_worker("w1")
    attempts = [{"reasoning": "r", "answer": a} for a in ("4", "4", "5")]
    program = dspyq.MultiChainComparison("question -> answer")
    job = cluster.client.submit(program, lm="openai/m", completions=attempts, question="2+2?")
    assert job.result(timeout=60).answer == "4"
    prompt = cluster.fake_lm.requests[-1]["body"]["messages"][-1]["content"]
    assert "my prediction is 5»" in prompt


def test_program_of_thought_runs_its_code_in_the_sandbox_on_a_worker(cluster: Cluster) -> None:
    code = "```python\nvalue = sum(range(10))\nSUBMIT({'answer': value})\n```"
    cluster.fake_lm.answer_fields(
        {"reasoning": "r", "generated_code": code}, match="preloaded function"
    )
    cluster.fake_lm.answer_fields({"reasoning": "r", "answer": "45"}, match="code_output")
    cluster.start_worker("w1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        program = dspyq.ProgramOfThought("question -> answer")
    job = cluster.client.submit(program, lm="openai/m", question="sum 0..9?")
    assert job.result(timeout=60).answer == "45"
    prompt = cluster.fake_lm.requests[-1]["body"]["messages"][-1]["content"]
    assert '{"output": {"answer": 45}}' in prompt


def test_ensemble_runs_its_programs_on_a_worker(cluster: Cluster) -> None:
    cluster.fake_lm.answer_fields({"answer": "short"}, match="Be terse")
    cluster.fake_lm.answer_fields({"answer": "a longer answer"}, match="Be thorough")
    cluster.start_worker("w1")
    programs = [
        dspyq.Predict(dspyq.Signature("question -> answer", "Be terse.")),
        dspyq.Predict(dspyq.Signature("question -> answer", "Be thorough.")),
    ]
    ensemble = dspyq.Ensemble(reduce_fn=longest_answer).compile(programs)
    job = cluster.client.submit(ensemble, lm="openai/m", question="Why?")
    assert job.result(timeout=60).answer == "a longer answer"
    assert len(cluster.fake_lm.requests) == 2
