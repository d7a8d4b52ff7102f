"""How MIPROv2's search strategy plans its trials, without a queue or an LM.

The state is JSON: a search played with its state dumped and loaded between every two
trials (as a queued run checkpoints it) asks exactly what one kept in memory asks.
"""

from __future__ import annotations

import random

from dspyq.optimize.mipro_search import MiproRounds, MiproState, json_state
from dspyq.optimize.strategy import Bench, Outcome


def state(*, minibatch: bool = True, num_trials: int = 7) -> MiproState:
    return MiproState(
        prepared=True,
        instructions={0: ["original", "a", "b"]},
        demos={0: [[], [{"question": "q", "answer": "a"}], [{"question": "r", "answer": "b"}]]},
        val_indices=[0, 1, 2, 3, 4, 5],
        num_trials=num_trials,
        minibatch=minibatch,
        minibatch_size=2,
        full_eval_steps=3,
        rng=json_state(random.Random(9).getstate()),
    )


def play(
    search: MiproState, scores: dict[int, float] | None = None, *, reload: bool = False
) -> MiproState:
    """Run the whole search, trial ``n`` scoring ``scores.get(n, 50.0)``."""
    rounds = MiproRounds(None, seed=9)
    for _ in range(100):
        (candidate, *more) = rounds.next_round(search, width=4) or [None]
        if candidate is None:
            return search
        assert not more  # one trial per round: each depends on the scores before it
        score = (scores or {}).get(candidate.iteration, 50.0)
        rounds.fold(search, [Outcome(iteration=candidate.iteration, score=score)])
        if reload:
            search = MiproState.model_validate_json(search.model_dump_json())
    raise AssertionError("the search never ended")


def test_the_default_program_comes_first_then_minibatches_and_full_evaluations() -> None:
    search = play(state())

    first = search.results[0]
    assert (first.number, first.params, first.full_eval) == (
        1,
        {"0_predictor_instruction": 0, "0_predictor_demos": 0},
        True,
    )
    sizes = [r.batch_size for r in search.results]
    # The default, 7 minibatch trials, and 3 full evaluations (after every third
    # minibatch trial and once before the end, as DSPy).
    assert sizes.count(2) == 7 and sizes.count(6) == 1 + 3
    assert [r.number for r in search.results] == list(range(1, 12))
    assert [r.number for r in search.results if r.full_eval] == [1, 5, 9, 11]
    assert search.total() == 11


def test_a_checkpointed_search_asks_what_one_kept_in_memory_asks() -> None:
    kept, reloaded = play(state()), play(state(), reload=True)
    assert [r.params for r in kept.results] == [r.params for r in reloaded.results]
    assert [r.example_indices for r in kept.results] == [
        r.example_indices for r in reloaded.results
    ]


def test_without_minibatches_every_trial_is_a_full_evaluation() -> None:
    search = play(state(minibatch=False, num_trials=5))
    assert all(r.full_eval for r in search.results)
    assert len(search.results) == search.total() == 6


def test_full_evaluations_pick_the_best_averaging_combination_not_yet_scored() -> None:
    search = play(state(num_trials=3), {2: 0.0, 3: 90.0, 4: 40.0})
    by_number = {r.number: r for r in search.results}
    assert by_number[5].full_eval and by_number[5].params == by_number[3].params
    assert search.best_number in (1, 5)


def test_a_trial_is_scored_on_its_minibatch_of_the_searched_valset() -> None:
    search = state()
    rounds = MiproRounds(None, seed=9)
    bench = Bench(student=None, trainset=list("xy"), valset=list("abcdef"))  # type: ignore[arg-type]
    (default,) = rounds.next_round(search, 1)
    assert rounds.devset(default, bench, search) == list("abcdef")
    rounds.fold(search, [Outcome(iteration=1, score=10.0)])
    (trial,) = rounds.next_round(search, 1)
    assert not trial.full_eval and len(rounds.devset(trial, bench, search)) == 2
