"""How a MIPROv2 run's coordinator plans its trials, without a queue or an LM."""

from __future__ import annotations

from dspyq.tasks.mipro_run import SearchState, TrialDone, next_trials


def state(*, minibatch: bool = True, num_trials: int = 7) -> SearchState:
    return SearchState(
        instructions={"0": ["original", "a", "b"]},
        demos={"0": [[], [{"question": "q", "answer": "a"}], [{"question": "r", "answer": "b"}]]},
        val_indices=[0, 1, 2, 3, 4, 5],
        num_trials=num_trials,
        minibatch=minibatch,
        minibatch_size=2,
        full_eval_steps=3,
    )


def play(search: SearchState, width: int, score: float = 50.0) -> list[list[int | None]]:
    """Run the whole search, every trial scoring ``score``; each round's minibatch sizes."""
    rounds = []
    for round_index in range(100):
        jobs = next_trials(search, seed=9, round_index=round_index, width=width)
        if not jobs:
            return rounds
        rounds.append([None if j.indices is None else len(j.indices) for j in jobs])
        for job in jobs:
            search.trials.append(
                TrialDone(
                    number=job.number, params=job.params, score=score,
                    full_eval=job.indices is None,
                )
            )  # fmt: skip
    raise AssertionError("the search never ended")


def test_the_default_program_comes_first_then_minibatches_and_full_evaluations() -> None:
    search = state()
    rounds = play(search, width=4)

    first = search.trials[0]
    assert (first.number, first.params, first.full_eval) == (
        1,
        {"0_predictor_instruction": 0, "0_predictor_demos": 0},
        True,
    )
    assert rounds[0] == [None, 2, 2, 2]
    sizes = [size for batch in rounds for size in batch]
    # The default, 7 minibatch trials, and ceil(7 / 3) = 3 full evaluations.
    assert sizes.count(2) == 7 and sizes.count(None) == 1 + 3
    assert [t.number for t in search.trials] == list(range(1, 12))
    assert search.total() == 11


def test_the_same_checkpoint_asks_the_same_trials() -> None:
    one, two = state(), state()
    play(one, width=3)
    play(two, width=3)
    assert [t.params for t in one.trials] == [t.params for t in two.trials]


def test_without_minibatches_every_trial_is_a_full_evaluation() -> None:
    search = state(minibatch=False, num_trials=5)
    rounds = play(search, width=2)
    assert all(size is None for batch in rounds for size in batch)
    assert len(search.trials) == search.total() == 6


def test_full_evaluations_pick_the_best_averaging_combination_not_yet_scored() -> None:
    search = state(num_trials=3)
    jobs = next_trials(search, seed=9, round_index=0, width=4)
    for job, score in zip(jobs, [0.0, 10.0, 90.0, 40.0], strict=True):
        search.trials.append(
            TrialDone(
                number=job.number, params=job.params, score=score, full_eval=job.indices is None
            )
        )
    (full,) = next_trials(search, seed=9, round_index=1, width=4)
    assert full.indices is None and full.params == jobs[2].params
