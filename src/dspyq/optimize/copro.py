"""COPRO: coordinate-ascent prompt optimization of each predictor's instruction and prefix.

Same algorithm and prompts as DSPy 3.4.1's ``dspy.COPRO``. For every predictor a prompt
model proposes ``breadth - 1`` instructions (plus an output prefix) at
``init_temperature``; with the original that makes ``breadth`` candidates, each scored
with :class:`Evaluate` on the trainset. There are ``depth`` rounds of scoring; between
two rounds the best attempts so far (worst first, with their scores) are shown to the
prompt model, which proposes ``breadth`` more. Predictors are tuned one after the
other, each keeping its best candidate before the next is tried. The best program found is returned with
``candidate_programs``, ``total_calls`` and, with ``track_stats=True``,
``results_best`` / ``results_latest``.

The search is :class:`CoproRounds`, a round strategy (:mod:`dspyq.optimize.strategy`):
a round is one predictor's pool at one depth, preceded by the proposals when a depth
begins; ``compile`` runs it in-process and a queued run on the queue, the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from dspyq.core.context import context
from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.core.predict import Predict
from dspyq.core.signature import Signature
from dspyq.errors import ConfigurationError
from dspyq.optimize.evaluate import CandidateScore, Evaluate
from dspyq.optimize.instructions import (
    BasicGenerateInstruction,
    GenerateInstructionGivenAttempts,
    InstructionCandidate,
    ProgramRecord,
    ScoredCandidate,
    apply_instructions,
    clean_proposal,
    drop_duplicates,
    empty_stats,
    instruction_of,
    record_stats,
)
from dspyq.optimize.local_executor import run_rounds
from dspyq.optimize.strategy import Bench, Candidate, Folded, Outcome, RoundStrategy
from dspyq.optimize.teleprompter import CompileInputs, Teleprompter
from dspyq.settings import get_settings

__all__ = [
    "COPRO",
    "BasicGenerateInstruction",
    "CoproRounds",
    "GenerateInstructionGivenAttempts",
    "InstructionCandidate",
    "ProgramRecord",
    "ScoredCandidate",
    "apply_instructions",
    "instruction_of",
]

logger = logging.getLogger(__name__)

Stats = dict[str, list[float]]


class COPRO(Teleprompter):
    """Optimize the instructions (and output prefixes) of a program's predictors.

    ``breadth``, ``depth`` and ``init_temperature`` default to the deployment settings
    (``DSPYQ_OPTIMIZATION__COPRO__BREADTH`` ...; 10, 3 and 1.4 out of the box).
    ``prompt_model`` writes the proposals (default: the configured LM).
    """

    def __init__(
        self,
        prompt_model: Any = None,
        metric: Callable[..., Any] | None = None,
        breadth: int | None = None,
        depth: int | None = None,
        init_temperature: float | None = None,
        track_stats: bool = False,
        **_kwargs: Any,
    ) -> None:
        defaults = get_settings().optimization.copro
        self.breadth = defaults.breadth if breadth is None else breadth
        self.depth = defaults.depth if depth is None else depth
        self.init_temperature = (
            defaults.init_temperature if init_temperature is None else init_temperature
        )
        if self.breadth <= 1:
            raise ConfigurationError("Breadth must be greater than 1", context={"breadth": breadth})
        if self.depth < 1:
            raise ConfigurationError("Depth must be at least 1", context={"depth": depth})
        self.metric = metric
        self.prompt_model = prompt_model
        self.track_stats = track_stats

    # --- the steps a coordinator can run one by one -------------------------------------

    def _propose(
        self, signature: type[Signature], n: int, **inputs: Any
    ) -> list[InstructionCandidate]:
        proposer = Predict(signature, n=n, temperature=self.init_temperature)
        if self.prompt_model is not None:
            with context(lm=self.prompt_model):
                prediction = proposer(**inputs)
        else:
            prediction = proposer(**inputs)
        completions = prediction.completions
        rows = [completions[i] for i in range(len(completions))] if completions else [prediction]
        return [
            InstructionCandidate(
                instruction=clean_proposal(row.get("proposed_instruction")),
                prefix=clean_proposal(row.get("proposed_prefix_for_output_field")),
            )
            for row in rows
        ]

    def propose_initial(self, basic: InstructionCandidate) -> list[InstructionCandidate]:
        """``breadth - 1`` proposals from the instruction alone, then the original itself."""
        proposals = self._propose(
            BasicGenerateInstruction, self.breadth - 1, basic_instruction=basic.instruction
        )
        return [
            *proposals,
            InstructionCandidate(
                instruction=clean_proposal(basic.instruction), prefix=clean_proposal(basic.prefix)
            ),
        ]

    def propose_from_attempts(
        self, attempts: Sequence[ScoredCandidate]
    ) -> list[InstructionCandidate]:
        """``breadth`` proposals shown the best attempts so far (up to ``breadth`` of them,
        in increasing order of score, as DSPy lists them)."""
        best = sorted(attempts, key=lambda c: c.score, reverse=True)[: self.breadth]
        lines: list[str] = []
        for number, attempt in enumerate(reversed(best), start=1):
            lines.append(f"Instruction #{number}: {attempt.instruction}")
            lines.append(f"Prefix #{number}: {attempt.prefix}")
            lines.append(f"Resulting Score #{number}: {attempt.score}")
        return self._propose(
            GenerateInstructionGivenAttempts, self.breadth, attempted_instructions=lines
        )

    def score_candidate(
        self,
        program: Module,
        selection: Mapping[str, InstructionCandidate],
        evaluate: Evaluate,
    ) -> float:
        """Score ``program`` with ``selection`` applied: the average metric, in percent."""
        return float(evaluate(apply_instructions(program, selection)).score)

    # --- the search ---------------------------------------------------------------------

    def _compile(
        self,
        inputs: CompileInputs,
        *,
        eval_kwargs: Mapping[str, Any] | None = None,
    ) -> Module:
        """Optimize ``student``'s instructions on ``trainset``; return the best program.

        ``student`` may already have demos. ``eval_kwargs`` go to :class:`Evaluate`
        (``num_threads``, ``display_progress`` ...). ``teacher`` and ``valset`` are
        accepted for the common call shape and not used: COPRO scores on the trainset.
        """
        student, trainset = inputs.student, inputs.trainset
        module = student.deepcopy()
        evaluate = Evaluate(devset=list(trainset), metric=self.metric, **dict(eval_kwargs or {}))

        def score(program: Module, devset: list[Example]) -> CandidateScore:
            result = evaluate(program, devset=devset)
            return CandidateScore(score=result.score, subscores=[r[2] for r in result.results])

        rounds = CoproRounds(self)
        run = run_rounds(rounds, Bench(module, list(trainset)), score=score)
        return rounds.best_program(run.state, module)


class CoproState(BaseModel):
    """COPRO's search so far (JSON, so a queued run checkpoints it between rounds)."""

    names: list[str]
    current: dict[str, InstructionCandidate]
    latest: dict[str, list[InstructionCandidate]] = Field(default_factory=dict)
    every: dict[str, list[InstructionCandidate]] = Field(default_factory=dict)
    evaluated: dict[str, list[ScoredCandidate]] = Field(default_factory=dict)
    depth: int = 0
    predictor: int = 0
    proposed: int = -1
    """The depth whose proposals are in ``latest``."""
    total_calls: int = 0
    results_best: dict[str, Stats] = Field(default_factory=dict)
    results_latest: dict[str, Stats] = Field(default_factory=dict)


class CoproRounds(RoundStrategy[CoproState]):
    """COPRO as rounds: per depth, the proposals, then each predictor's pool in turn
    (its candidates scored with the others' best settings), keeping its best."""

    state_type = CoproState

    def __init__(self, optimizer: COPRO) -> None:
        self.optimizer = optimizer

    def start(self, bench: Bench) -> CoproState:
        predictors = bench.student.named_predictors()
        if not predictors:
            raise ConfigurationError(
                f"{type(bench.student).__name__} has no predictors to optimize"
            )
        names = [name for name, _ in predictors]
        return CoproState(
            names=names,
            current={name: instruction_of(p) for name, p in predictors},
            evaluated={name: [] for name in names},
            results_best={name: empty_stats() for name in names},
            results_latest={name: empty_stats() for name in names},
        )

    def _done(self, state: CoproState) -> bool:
        return state.depth >= self.optimizer.depth

    def needs_preparation(self, state: CoproState) -> bool:
        return not self._done(state) and state.proposed < state.depth

    def prepare(self, state: CoproState, bench: Bench) -> CoproState:
        """The depth's proposals: from each instruction first, then from its attempts."""
        for name in state.names:
            if state.depth == 0:
                state.latest[name] = self.optimizer.propose_initial(state.current[name])
                state.every[name] = list(state.latest[name])
                continue
            attempts = state.evaluated[name]
            if self.optimizer.track_stats:
                top = sorted((c.score for c in attempts), reverse=True)[:10]
                record_stats(state.results_best[name], state.depth - 1, top)
            state.latest[name] = self.optimizer.propose_from_attempts(attempts)
            state.every[name].extend(state.latest[name])
        state.proposed = state.depth
        return state

    def _pool(self, state: CoproState) -> list[InstructionCandidate]:
        # With several predictors, every candidate is scored again: the others' best
        # settings may have changed since.
        name = state.names[state.predictor]
        return state.latest[name] if len(state.names) == 1 else state.every[name]

    def next_round(self, state: CoproState, width: int) -> list[Candidate]:
        """The whole pool of the predictor being tuned (its candidates do not depend on
        one another's scores)."""
        if self._done(state):
            return []
        name = state.names[state.predictor]
        logger.info("Iteration Depth: %d/%d.", state.depth + 1, self.optimizer.depth)
        return [
            Candidate(
                iteration=state.total_calls + i + 1,
                seed=i,
                proposal={
                    "predictor": name,
                    "selection": {
                        n: c.model_dump() for n, c in {**state.current, name: cand}.items()
                    },
                },
            )
            for i, cand in enumerate(self._pool(state))
        ]

    def build(self, candidate: Candidate, bench: Bench, state: CoproState) -> Module:
        return apply_instructions(bench.student, _selection(candidate))

    def devset(self, candidate: Candidate, bench: Bench, state: CoproState) -> list[Example]:
        return list(bench.trainset)  # COPRO scores on the trainset, as DSPy

    def fold(self, state: CoproState, outcomes: list[Outcome]) -> list[Folded]:
        name = state.names[state.predictor]
        pool = self._pool(state)
        scored = {o.seed: o for o in outcomes}
        latest_scores: list[float] = []
        folded = []
        for c_i, candidate in enumerate(pool):
            outcome = scored.get(c_i)
            if outcome is None:
                continue
            state.total_calls += 1
            if outcome.score is not None:
                self._keep(state, name, candidate, outcome, state.depth)
                if len(pool) - self.optimizer.breadth <= c_i:
                    latest_scores.append(outcome.score)
            found = [c.score for c in state.evaluated[name]]
            event = {
                "optimizer": type(self.optimizer).__name__,
                "iteration": outcome.iteration,
                "depth": state.depth,
                "predictor": name,
                "candidate": candidate.model_dump(),
                "evaluation_score": outcome.score,
                "best_score": max(found) if found else None,
            }
            folded.append(Folded(outcome, event))
        if self.optimizer.track_stats and latest_scores:
            record_stats(state.results_latest[name], state.depth, latest_scores)
        if state.evaluated[name]:  # keep this predictor's best before tuning the next one
            best = max(state.evaluated[name], key=lambda c: c.score)
            state.current[name] = InstructionCandidate(
                instruction=best.instruction, prefix=best.prefix
            )
        state.predictor += 1
        if state.predictor == len(state.names):
            state.predictor, state.depth = 0, state.depth + 1
        return folded

    @staticmethod
    def _keep(
        state: CoproState,
        name: str,
        candidate: InstructionCandidate,
        outcome: Outcome,
        depth: int,
    ) -> None:
        """Record a candidate's score, keeping its best (and where it was reached)."""
        assert outcome.score is not None
        attempts = state.evaluated[name]
        record = ScoredCandidate(
            predictor=name,
            instruction=candidate.instruction,
            prefix=candidate.prefix,
            score=outcome.score,
            depth=depth,
            selection={**state.current, name: candidate},
            iteration=outcome.iteration,
        )
        for i, seen in enumerate(attempts):
            if (seen.instruction, seen.prefix) == (candidate.instruction, candidate.prefix):
                if seen.score < outcome.score:
                    attempts[i] = record
                return
        attempts.append(record)

    def _records(self, state: CoproState) -> list[ScoredCandidate]:
        records = [record for name in state.names for record in state.evaluated[name]]
        records.sort(key=lambda c: c.score, reverse=True)
        return drop_duplicates(records)

    def best(self, state: CoproState) -> int | None:
        records = self._records(state)
        return records[0].iteration if records else None

    def best_program(self, state: CoproState, module: Module) -> Module:
        """The best program found, carrying DSPy's ``candidate_programs`` and stats."""
        if self.optimizer.track_stats:
            for name in state.names:
                top = sorted((c.score for c in state.evaluated[name]), reverse=True)[:10]
                record_stats(state.results_best[name], self.optimizer.depth - 1, top)
        candidates = [
            ProgramRecord(
                score=record.score,
                program=apply_instructions(module, record.selection),
                instruction=record.instruction,
                prefix=record.prefix,
                depth=record.depth,
                predictor=record.predictor,
            )
            for record in self._records(state)
        ]
        best_program: Any = candidates[0]["program"]
        best_program.candidate_programs = candidates
        best_program.total_calls = state.total_calls
        if self.optimizer.track_stats:
            best_program.results_best = state.results_best
            best_program.results_latest = state.results_latest
        return best_program


def _selection(candidate: Candidate) -> dict[str, InstructionCandidate]:
    chosen = (candidate.proposal or {}).get("selection") or {}
    return {name: InstructionCandidate.model_validate(c) for name, c in chosen.items()}
