"""SIMBA (Stochastic Introspective Mini-Batch Ascent), as DSPy 3.4.1's ``dspy.SIMBA``.

Each of ``max_steps`` steps takes the next mini-batch of ``bsize`` training examples
(reshuffled when the data runs out) and runs every example ``num_candidates`` times,
each run on a program drawn by softmax over average scores from the best programs so
far (the student always among them) with its own LM rollout. Runs of one example form
a bucket; buckets with the widest spread of scores come first. For each bucket a source
program is drawn the same way, loses a Poisson-distributed number of demos, and gets
one strategy (:mod:`~dspyq.optimize.simba_strategies`): a demo from its best run, or a
rule contrasting its best and worst runs. Up to ``num_candidates + 1`` such candidates
are scored on the mini-batch and join the pool; the best of each step is a winner.
Finally up to ``num_candidates + 1`` winners, evenly spaced, are scored on the whole
trainset; the best is returned with ``candidate_programs`` and ``trial_logs``.

Randomness is DSPy's call for call: one ``random.Random(seed)`` and one
``numpy.random.default_rng(seed)``, so a seed gives the same program as DSPy's.
Runs in this process only.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from dspyq.core.callbacks import with_callbacks
from dspyq.core.context import current
from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.core.parallel import Parallel
from dspyq.optimize.simba_strategies import (
    Outcome,
    Strategy,
    append_a_demo,
    append_a_rule,
    prepare_models_for_resampling,
    wrap_program,
)
from dspyq.optimize.teleprompter import Teleprompter

__all__ = ["SIMBA"]

logger = logging.getLogger(__name__)


class SIMBA(Teleprompter):
    """``SIMBA(metric=..., bsize=32, ...).compile(student, trainset=..., seed=0)``.

    ``metric(example, prediction)`` returns a number, or a ``Prediction`` with a
    ``score`` (its other fields are shown to the prompt model with the trajectories).
    """

    def __init__(
        self,
        *,
        metric: Callable[..., Any],
        bsize: int = 32,
        num_candidates: int = 6,
        max_steps: int = 8,
        max_demos: int = 4,
        prompt_model: Any = None,
        teacher_settings: Mapping[str, Any] | None = None,
        demo_input_field_maxlen: int = 100_000,
        num_threads: int | None = None,
        temperature_for_sampling: float = 0.2,
        temperature_for_candidates: float = 0.2,
    ) -> None:
        self.metric = metric
        self.bsize = bsize
        self.num_candidates = num_candidates
        self.max_steps = max_steps
        self.max_demos = max_demos
        self.prompt_model = prompt_model or current().lm
        self.teacher_settings = teacher_settings
        self.demo_input_field_maxlen = demo_input_field_maxlen
        self.num_threads = num_threads
        self.temperature_for_sampling = temperature_for_sampling
        self.temperature_for_candidates = temperature_for_candidates
        self.strategies: list[Strategy] = [append_a_rule]
        if max_demos > 0:
            self.strategies.insert(0, append_a_demo(demo_input_field_maxlen))

    @with_callbacks
    def compile(  # type: ignore[override]
        self, student: Module, *, trainset: Sequence[Example], seed: int = 0
    ) -> Module:
        """Optimize a copy of ``student``; see the module docstring."""
        if len(trainset) < self.bsize:  # DSPy asserts this
            raise AssertionError(f"Trainset too small: {len(trainset)} < {self.bsize}")
        return _SimbaRun(self, student, list(trainset), seed).run()


class _SimbaRun:
    """One ``compile``: the program pool, its scores and both random generators."""

    def __init__(self, opt: SIMBA, student: Module, trainset: list[Example], seed: int) -> None:
        self.opt, self.trainset = opt, trainset
        self.rng = random.Random(seed)
        self.rng_np = np.random.default_rng(seed)
        baseline = student.deepcopy()
        baseline.simba_idx = 0  # type: ignore[attr-defined]
        self.programs: list[Module] = [baseline]
        self.scores: dict[int, list[float]] = {0: []}
        self.winners: list[Module] = [baseline]
        self.parallel = Parallel(access_examples=False, num_threads=opt.num_threads)
        self.trial_logs: dict[int, dict[str, Any]] = {}

    # --- the pool -----------------------------------------------------------------

    def average(self, index: int) -> float:
        scores = self.scores.get(index, [])
        return sum(scores) / len(scores) if scores else 0.0

    def top_k_plus_baseline(self, k: int) -> list[int]:
        ranked = sorted(self.programs, key=lambda p: self.average(p.simba_idx), reverse=True)  # type: ignore[attr-defined]
        top = [p.simba_idx for p in ranked[:k]]  # type: ignore[attr-defined]
        if 0 not in top and top:
            top[-1] = 0
        return list(dict.fromkeys(top))

    def softmax_sample(self, indices: list[int], temperature: float) -> int:
        if not indices:
            raise ValueError("No programs available for softmax sampling.")
        exps = [np.exp(self.average(i) / temperature) for i in indices]
        total = sum(exps)
        if total <= 0:
            return self.rng.choice(indices)
        return self.rng.choices(indices, weights=[e / total for e in exps], k=1)[0]

    def register(self, program: Module, scores: list[float]) -> None:
        program.simba_idx = len(self.scores)  # type: ignore[attr-defined]
        self.programs.append(program)
        self.scores[program.simba_idx] = scores  # type: ignore[attr-defined]

    def score_each(self, systems: list[Module], examples: list[Example]) -> list[list[Any]]:
        pairs = [(wrap_program(s, self.opt.metric), ex) for s in systems for ex in examples]
        outputs = self.parallel(pairs)
        size = len(examples)
        return [
            [o["score"] for o in outputs[i * size : (i + 1) * size]] for i in range(len(systems))
        ]

    # --- the search ---------------------------------------------------------------

    def run(self) -> Module:
        opt = self.opt
        order = list(range(len(self.trainset)))
        self.rng.shuffle(order)
        position = 0
        for step in range(opt.max_steps):
            self.trial_logs[step] = {}
            logger.info("Starting batch %d of %d.", step + 1, opt.max_steps)
            if position + opt.bsize > len(self.trainset):
                self.rng.shuffle(order)
                position = 0
            batch = [self.trainset[i] for i in order[position : position + opt.bsize]]
            position += opt.bsize
            self.step(step, batch)
        return self.finish()

    def step(self, step: int, batch: list[Example]) -> None:
        opt = self.opt
        models = prepare_models_for_resampling(
            self.programs[0], opt.num_candidates, opt.teacher_settings
        )
        top = self.top_k_plus_baseline(opt.num_candidates)
        pairs: list[tuple[Any, Example]] = []
        predictor2name: dict[int, str] = {}
        for model in models:
            for example in batch:
                chosen = self.softmax_sample(top, opt.temperature_for_sampling)
                system = self.programs[chosen].deepcopy()
                system.set_lm(model)
                for name, predictor in system.named_predictors():
                    predictor2name[id(predictor)] = name
                pairs.append((wrap_program(system, opt.metric), example))
        logger.info(
            "Sampling program trajectories on %d examples x %d samples.",
            opt.bsize,
            opt.num_candidates,
        )
        outputs: list[Outcome] = self.parallel(pairs)
        candidates = self.build_candidates(step, batch, outputs, predictor2name)
        logger.info(
            "Batch %d: Evaluating %d programs on %d examples.",
            step + 1,
            len(candidates),
            opt.bsize,
        )
        per_candidate = self.score_each(candidates, batch)
        averages = [sum(s) / len(s) for s in per_candidate]
        logger.info(
            "Scores after %d batches: %s, Best: %s\n",
            step + 1,
            averages,
            max(averages) if averages else "N/A",
        )
        if averages:
            self.winners.append(candidates[averages.index(max(averages))].deepcopy())
        for candidate, scores in zip(candidates, per_candidate, strict=True):
            self.register(candidate, scores)

    def build_candidates(
        self,
        step: int,
        batch: list[Example],
        outputs: list[Outcome],
        predictor2name: dict[int, str],
    ) -> list[Module]:
        opt = self.opt
        all_scores = [float(o["score"]) for o in outputs]
        p10, p90 = np.percentile(all_scores, 10), np.percentile(all_scores, 90)
        buckets = []
        for index in range(len(batch)):
            bucket = sorted(outputs[index :: opt.bsize], key=lambda o: o["score"], reverse=True)
            best, worst = float(bucket[0]["score"]), float(bucket[-1]["score"])
            mean = sum(o["score"] for o in bucket) / len(bucket)
            buckets.append((bucket, (best - worst, best, best - mean)))
        buckets.sort(key=lambda b: b[1], reverse=True)
        baseline = sum(o["score"] for o in outputs) / len(outputs)
        logger.info("Batch %d: Baseline mini-batch score: %s\n", step + 1, baseline)

        candidates: list[Module] = []
        for number, (bucket, (gap, best, to_mean)) in enumerate(buckets, 1):
            logger.info(
                "Batch %d: Processing bucket #%d, with max score %s, max-to-min gap %s, "
                "and max-to-avg gap %s.",
                step + 1,
                number,
                best,
                gap,
                to_mean,
            )
            source = self.softmax_sample(
                self.top_k_plus_baseline(opt.num_candidates), opt.temperature_for_candidates
            )
            system = self.programs[source].deepcopy()
            name2predictor = dict(system.named_predictors())
            dropped = self.drop_demos(name2predictor)
            strategy = self.rng.choice(opt.strategies)
            logger.info(
                "Batch %d: Invoking strategy: %s%s",
                step + 1,
                strategy.__name__,
                f", having dropped {dropped} demos per predictor" if dropped else "",
            )
            try:
                strategy(
                    bucket,
                    system,
                    predictor2name=predictor2name,
                    name2predictor=name2predictor,
                    batch_10p_score=p10,
                    batch_90p_score=p90,
                    prompt_model=opt.prompt_model,
                )
            except Exception as error:
                logger.error("Strategy failed with error: %s", error)
                continue
            candidates.append(system)
            if len(candidates) >= opt.num_candidates + 1:
                break
        return candidates

    def drop_demos(self, name2predictor: Mapping[str, Any]) -> int:
        """Drop the same demo positions from every predictor: about demos/max_demos of
        them (Poisson), at least one once a predictor is full."""
        cap = self.opt.max_demos if self.opt.max_demos > 0 else 3
        counts = [len(p.demos) for p in name2predictor.values()]
        most = max(counts) if counts else 0
        count = max(self.rng_np.poisson(most / cap), int(most >= cap))
        count = min(count, most)
        dropped = [self.rng.randrange(most) for _ in range(count)]
        for predictor in name2predictor.values():
            predictor.demos = [d for i, d in enumerate(predictor.demos) if i not in dropped]
        return int(count)

    def finish(self) -> Module:
        last, wanted = len(self.winners) - 1, self.opt.num_candidates + 1
        if last < 1:
            picks = [0] * wanted
        else:
            picks = [round(i * last / (wanted - 1)) for i in range(wanted)]
        programs = [self.winners[i].deepcopy() for i in dict.fromkeys(picks)]
        logger.info("VALIDATION: Evaluating %d programs on the full trainset.", len(programs))
        scores = []
        for index, program_scores in enumerate(self.score_each(programs, self.trainset)):
            average = sum(program_scores) / len(program_scores) if program_scores else 0.0
            scores.append(average)
            if index != 0:
                self.trial_logs[index - 1]["train_score"] = average
        ranked: list[dict[str, Any]] = [
            {"score": s, "program": p} for s, p in zip(scores, programs, strict=True)
        ]
        ranked.sort(key=lambda c: c["score"], reverse=True)
        best_index = scores.index(max(scores)) if scores else 0
        best = programs[best_index].deepcopy()
        logger.info(
            "Final trainset scores: %s, Best: %s (at index %s)\n\n\n",
            scores,
            max(scores) if scores else "N/A",
            best_index if scores else "N/A",
        )
        best.candidate_programs = ranked  # type: ignore[attr-defined]
        best.trial_logs = self.trial_logs  # type: ignore[attr-defined]
        return best
