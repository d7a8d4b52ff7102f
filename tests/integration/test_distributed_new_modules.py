"""XMLAdapter, MultiChainComparison, ProgramOfThought, CodeAct and retrieving programs
(Embeddings, KNN, ColBERTv2 through Retrieve) run by a real worker over Redis and SQL.

For retrieval the fake LM answers from whichever passage or hint is in the prompt, so the
answer shows what was retrieved; its embeddings are fixed per text, so the worker's index
ranks passages as this process's does. A retriever crosses the queue as the JSON its
program builds it from (a corpus, a model name, a URL): a built index is refused at submit.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from adapter_programs import XMLQA, longest_answer
from retrieval_programs import CorpusQA, IndexQA, NearestQA, SearchQA, factorial

import dspyq
from dspyq.errors import InputError
from dspyq.testing.cluster import Cluster, make_cluster
from dspyq.testing.fake_search import FakeSearchServer

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent


@pytest.fixture
def cluster(tmp_path: Path, sqlite_url: str) -> Iterator[Cluster]:
    cluster, server = make_cluster(
        tmp_path,
        sqlite_url,
        PYTHONPATH=str(HERE),
        DSPYQ_ALLOWED_IMPORTS='["adapter_programs", "retrieval_programs"]',
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


CITIES = {"Paris": "France", "Tokyo": "Japan", "Lima": "Peru", "Cairo": "Egypt"}
CORPUS = [f"{city} is the capital of {country}." for city, country in CITIES.items()]
EMBEDDER = "openai/text-embedding-3-small"


def script_passages(cluster: Cluster) -> None:
    """Answer with the city of the passage (or hint) the prompt shows."""
    for city in CITIES:
        cluster.fake_lm.answer_fields({"answer": city}, match=re.escape(f"{city} is the capital"))
        cluster.fake_lm.answer_fields({"answer": city}, match=re.escape(f"-> {city}"))


def both(cluster: Cluster, program: dspyq.Module, **inputs: Any) -> tuple[Any, Any]:
    """(the answer in this process, the answer a worker gives)."""
    lm = dspyq.LM("openai/m", api_base=cluster.fake_lm.openai_base, api_key="k", cache=False)
    with dspyq.context(lm=lm):
        local = program(**inputs)
    cluster.start_worker("w1")
    queued = cluster.client.submit(program, lm="openai/m", **inputs).result(timeout=60)
    return local, queued


def worker_prompt(cluster: Cluster) -> str:
    return str(cluster.fake_lm.requests[-1]["body"]["messages"][-1]["content"])


def test_an_embeddings_index_retrieves_the_same_passage_on_a_worker(cluster: Cluster) -> None:
    script_passages(cluster)
    program = CorpusQA(CORPUS, EMBEDDER, cluster.fake_lm.openai_base)
    (passage,) = program.search("Which city is the capital?").passages
    local, queued = both(cluster, program, question="Which city is the capital?")
    assert queued.answer == local.answer == passage.split()[0]
    assert passage in worker_prompt(cluster)


def test_knn_finds_the_same_hints_on_a_worker(cluster: Cluster) -> None:
    script_passages(cluster)
    pairs = [[f"Capital of {country}?", city] for city, country in CITIES.items()]
    program = NearestQA(pairs, EMBEDDER, cluster.fake_lm.openai_base)
    (nearest,) = program.knn(question="Capital of Peru?")
    local, queued = both(cluster, program, question="Capital of Peru?")
    assert queued.answer == local.answer == nearest.answer
    assert f"{nearest.question} -> {nearest.answer}" in worker_prompt(cluster)


def overlap_first(query: str, passages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def words(text: str) -> set[str]:
        return set(re.findall(r"\w+", text.lower()))

    return sorted(passages, key=lambda p: -len(words(query) & words(p["text"])))


def test_retrieve_from_a_colbert_server_answers_the_same_on_a_worker(cluster: Cluster) -> None:
    script_passages(cluster)
    passages = [{"text": text, "pid": i, "score": 1.0} for i, text in enumerate(CORPUS)]
    with FakeSearchServer(passages, rank=overlap_first) as search:
        local, queued = both(cluster, SearchQA(search.url, k=1), question="capital of Egypt?")
        assert search.seen == [("GET", "capital of Egypt?", 1)] * 2  # here, then the worker
    assert queued.answer == local.answer == "Cairo"


def test_code_act_runs_its_code_and_tools_on_a_worker(cluster: Cluster) -> None:
    def script() -> None:
        cluster.fake_lm.reset()
        code = "```python\nvalue = factorial(5)\n```"
        cluster.fake_lm.answer_fields({"generated_code": code, "finished": True}, times=1)
        cluster.fake_lm.answer_fields({"reasoning": "the code printed 120", "factorial": "120"})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        program = dspyq.CodeAct("n: int -> factorial: int", tools=[factorial], max_iters=3)
    lm = dspyq.LM("openai/m", api_base=cluster.fake_lm.openai_base, api_key="k", cache=False)
    script()
    with dspyq.context(lm=lm):
        local = program(n=5)
    script()
    cluster.start_worker("w1")
    queued = cluster.client.submit(program, lm="openai/m", n=5).result(timeout=60)
    assert queued.factorial == local.factorial == 120
    assert queued.trajectory == local.trajectory
    assert queued.trajectory["code_output_0"] == "120"


def test_a_program_holding_a_built_index_is_refused_at_submit(cluster: Cluster) -> None:
    embedder = dspyq.Embedder(EMBEDDER, api_base=cluster.fake_lm.openai_base)
    program = IndexQA(dspyq.Embeddings(CORPUS, embedder, k=1))
    with pytest.raises(
        InputError, match=r"argument `index` of IndexQA is a Embeddings .* cannot be sent as JSON"
    ):
        cluster.client.submit(program, lm="openai/m", question="Which city?")


def knn_fewshot(cluster: Cluster, vectorizer: Any) -> dspyq.Module:
    """A KNNFewShot program over the capitals, showing the nearest one as a labeled demo."""
    train = [
        dspyq.Example(question=f"Capital of {country}?", answer=city).with_inputs("question")
        for city, country in CITIES.items()
    ]
    optimizer = dspyq.KNNFewShot(1, train, vectorizer, max_bootstrapped_demos=0)
    return optimizer.compile(dspyq.Predict("question -> answer"))


def test_a_knn_fewshot_program_shows_the_same_demo_on_a_worker(cluster: Cluster) -> None:
    for city in CITIES:  # answer with the city of the demo the prompt shows
        cluster.fake_lm.answer_fields({"answer": city}, match=re.escape(f"]]\n{city}\n"))
    embedder = dspyq.Embedder(EMBEDDER, api_base=cluster.fake_lm.openai_base)
    program = knn_fewshot(cluster, embedder)
    local, queued = both(cluster, program, question="Capital of Peru?")
    assert queued.answer == local.answer == "Lima"
    here, there = (
        r["body"]["messages"] for r in cluster.fake_lm.requests if "messages" in r["body"]
    )
    assert there == here
    assert any(m["content"] == "[[ ## question ## ]]\nCapital of Peru?" for m in there)


def test_a_knn_fewshot_program_with_a_lambda_vectorizer_is_refused_at_submit(
    cluster: Cluster,
) -> None:
    embedder = dspyq.Embedder(lambda batch: [[float(len(text)), 1.0] for text in batch])
    program = knn_fewshot(cluster, embedder)
    with pytest.raises(InputError, match=r"argument `vectorizer` of KNNFewShotProgram.*lambda"):
        cluster.client.submit(program, lm="openai/m", question="Capital of Peru?")
