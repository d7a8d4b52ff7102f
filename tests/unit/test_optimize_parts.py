"""A candidate's work split over tasks: devset parts joined into one score, and
bootstrapping in spans walked in trainset order (the demos of one ordered walk)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dspyq.core.chain_of_thought import ChainOfThought
from dspyq.core.context import context
from dspyq.core.example import Example
from dspyq.lm import LM
from dspyq.metrics import answer_exact_match
from dspyq.optimize.bootstrap import BootstrapFewShot, BootstrapOutcome
from dspyq.tasks.optimization import CandidateOutcome, RunPlan, combine_parts, part_of
from dspyq.testing.fake_lm import FakeLMServer

CAPITALS = {
    "France": "Paris",
    "Japan": "Tokyo",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Kenya": "Nairobi",
    "Peru": "Lima",
}


def examples() -> list[Example]:
    return [
        Example(question=f"What is the capital of {c}?", answer=a).with_inputs("question")
        for c, a in CAPITALS.items()
    ]


@pytest.mark.parametrize(("size", "parts"), [(50, 12), (7, 3), (3, 5), (0, 2), (8, 1)])
def test_parts_cover_the_devset_once_in_order(size: int, parts: int) -> None:
    devset = list(range(size))
    slices = [part_of(devset, p, parts) for p in range(parts)]
    assert [x for s in slices for x in s] == devset
    assert max(map(len, slices)) - min(map(len, slices)) <= 1


def test_parts_join_into_the_whole_devsets_score_or_its_first_error() -> None:
    def part(p: int, total: float, n: int, **extra: Any) -> CandidateOutcome:
        return CandidateOutcome(
            iteration=1, seed=0, round=0, part=p, parts=3, score_sum=total, examples=n, **extra
        )

    whole = combine_parts(
        [part(2, 1.0, 3), part(0, 2.0, 4, program={"kind": "p"}), part(1, 0.0, 4)]
    )
    assert len(whole) == 1
    assert (whole[0].score, whole[0].program, whole[0].parts) == (27.27, {"kind": "p"}, 1)

    failed = combine_parts(
        [part(0, 2.0, 4, program={"kind": "p"}), part(1, 0.0, 0, error={"message": "budget"})]
    )
    assert (failed[0].score, failed[0].program, failed[0].error) == (
        None,
        None,
        {"message": "budget"},
    )
    missing = combine_parts([part(0, 2.0, 4), part(2, 1.0, 3)])
    assert missing[0].score is None and "[1]" in str(missing[0].error)


def test_a_round_of_few_candidates_is_scored_in_parts_of_at_least_the_runs_threads() -> None:
    row = {"fields": {"question": "q", "answer": "a"}, "inputs": ["question"]}
    plan = RunPlan(
        optimizer="BootstrapFewShot", settings={}, metric="m", program={}, lm="openai/m",
        trainset=[row] * 50, valset=[row] * 50, run_name="r", num_threads=4,
    )  # fmt: skip
    assert [plan.parts_per_candidate(n) for n in (1, 2, 10, 12, 20)] == [12, 6, 2, 1, 1]
    assert plan.model_copy(update={"valset": [row] * 6}).parts_per_candidate(1) == 1
    assert plan.bootstrap_windows(40) == [(40, 44), (44, 48), (48, 50)]
    assert len(plan.bootstrap_windows(0)) == 12


def test_bootstrapping_in_spans_gives_the_demos_of_one_ordered_walk(
    fake_lm: FakeLMServer,
) -> None:
    for country in ["Italy", "Kenya", "Peru"]:
        fake_lm.answer_fields(
            {"reasoning": f"It is {CAPITALS[country]}.", "answer": CAPITALS[country]},
            match=rf"capital of {country}\?\n\nRespond with",
        )
    fake_lm.answer_fields({"reasoning": "I do not know.", "answer": "unknown"})
    lm = LM("openai/m", api_base=fake_lm.openai_base, api_key="k", cache=False, num_retries=0)

    def optimizer() -> BootstrapFewShot:
        return BootstrapFewShot(
            metric=answer_exact_match, max_bootstrapped_demos=2, max_labeled_demos=3, num_threads=2
        )

    with context(lm=lm):
        walked = optimizer().compile(ChainOfThought("question -> answer"), trainset=examples())
        spans: dict[int, list[BootstrapOutcome]] = {}
        for start, stop in [(0, 2), (2, 4), (4, 6)]:
            found = optimizer().bootstrap_span(
                ChainOfThought("question -> answer"), trainset=examples(), start=start, stop=stop
            )
            # As it crosses the queue: JSON.
            spans.update(
                {
                    i: [BootstrapOutcome.model_validate(json.loads(o.model_dump_json())) for o in r]
                    for i, r in found.items()
                }
            )
    first_span = {i: spans[i] for i in (0, 1)}
    assert (
        optimizer().compile_from_outcomes(
            ChainOfThought("question -> answer"), trainset=examples(), outcomes=first_span
        )
        is None
    )  # Italy (index 2) is needed
    joined = optimizer().compile_from_outcomes(
        ChainOfThought("question -> answer"), trainset=examples(), outcomes=spans
    )
    assert joined is not None

    def demos(program: Any) -> list[dict[str, Any]]:
        return [dict(d.items()) for d in program.predictors()[0].demos]

    assert demos(joined) == demos(walked)
    assert [d["question"] for d in demos(joined) if d.get("augmented")] == [
        "What is the capital of Italy?",
        "What is the capital of Kenya?",
    ]
