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

The expensive step, scoring one candidate, is :meth:`COPRO.score_candidate`: its inputs
apart from the program and data are JSON (:class:`InstructionCandidate` per predictor
name) and its output is a number, so a coordinator can fan the candidates of one round
out as tasks and checkpoint the :class:`ScoredCandidate` records after each round.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from dspyq.core.context import context
from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.core.observe import emit
from dspyq.core.predict import Predict
from dspyq.core.signature import InputField, OutputField, Signature, field_extra
from dspyq.errors import ConfigurationError
from dspyq.optimize.evaluate import Evaluate
from dspyq.optimize.teleprompter import Teleprompter
from dspyq.settings import get_settings

__all__ = [
    "COPRO",
    "BasicGenerateInstruction",
    "GenerateInstructionGivenAttempts",
    "InstructionCandidate",
    "ProgramRecord",
    "ScoredCandidate",
    "apply_instructions",
    "instruction_of",
]

logger = logging.getLogger(__name__)

_PREFIX_DESC = (
    "The string at the end of the prompt, which will help the model start solving the task"
)


class BasicGenerateInstruction(Signature):
    """You are an instruction optimizer for large language models. I will give you a ``signature`` of fields (inputs and outputs) in English. Your task is to propose an instruction that will lead a good language model to perform the task well. Don't be afraid to be creative."""

    basic_instruction: str = InputField(desc="The initial instructions before optimization")
    proposed_instruction: str = OutputField(desc="The improved instructions for the language model")
    proposed_prefix_for_output_field: str = OutputField(desc=_PREFIX_DESC)


class GenerateInstructionGivenAttempts(Signature):
    """You are an instruction optimizer for large language models. I will give some task instructions I've tried, along with their corresponding validation scores. The instructions are arranged in increasing order based on their scores, where higher scores indicate better quality.

    Your task is to propose a new instruction that will lead a good language model to perform the task even better. Don't be afraid to be creative."""

    attempted_instructions: str = InputField()
    proposed_instruction: str = OutputField(desc="The improved instructions for the language model")
    proposed_prefix_for_output_field: str = OutputField(desc=_PREFIX_DESC)


class InstructionCandidate(BaseModel):
    """An instruction and the prefix of the last output field, for one predictor."""

    model_config = ConfigDict(frozen=True)

    instruction: str
    prefix: str


class ScoredCandidate(BaseModel):
    """One evaluated candidate: which predictor, what it was set to, at which depth, its score.

    ``selection`` is every predictor's setting during the evaluation (the other
    predictors' best so far), so the scored program can be rebuilt from JSON.
    """

    predictor: str
    instruction: str
    prefix: str
    score: float
    depth: int
    selection: dict[str, InstructionCandidate]


class ProgramRecord(Mapping[str, Any]):
    """One entry of ``candidate_programs``: read it like DSPy's dict (``c["score"]``,
    ``c["program"]``).

    Deliberately not a dict: parameter discovery walks lists and dicts, and must not
    take the candidate programs hanging off the best program for its own predictors.
    """

    def __init__(self, **entries: Any) -> None:
        self._entries = dict(entries)

    def __getitem__(self, key: str) -> Any:
        return self._entries[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        shown = {k: v for k, v in self._entries.items() if k != "program"}
        return f"ProgramRecord({shown})"


def instruction_of(predictor: Predict) -> InstructionCandidate:
    """A predictor's current instruction and last output field's prefix."""
    signature = predictor.signature
    *_, last_field = signature.fields.values()
    return InstructionCandidate(
        instruction=signature.instructions, prefix=str(field_extra(last_field).get("prefix", ""))
    )


def apply_instructions(
    program: Module, selection: Mapping[str, InstructionCandidate], *, copy: bool = True
) -> Module:
    """``program`` (a copy unless ``copy=False``) with the named predictors' instructions
    and last-field prefixes replaced."""
    target = program.deepcopy() if copy else program
    for name, predictor in target.named_predictors():
        candidate = selection.get(name)
        if candidate is None:
            continue
        *_, last_key = predictor.signature.fields
        predictor.signature = predictor.signature.with_instructions(
            candidate.instruction
        ).with_updated_fields(last_key, prefix=candidate.prefix)
    return target


def _clean(value: Any) -> str:
    # Prompt models often quote their proposals; DSPy strips quotes, then whitespace.
    return str(value if value is not None else "").strip('"').strip()


def _spread(scores: Sequence[float]) -> dict[str, float]:
    return {
        "max": max(scores),
        "average": sum(scores) / len(scores),
        "min": min(scores),
        "std": statistics.pstdev(scores),  # numpy's std, as DSPy reports
    }


def _record_stats(table: dict[str, list[float]], depth: int, scores: Sequence[float]) -> None:
    table["depth"].append(depth)
    for key, value in _spread(scores).items():
        table[key].append(value)


def _empty_stats() -> dict[str, list[float]]:
    return {"depth": [], "max": [], "average": [], "min": [], "std": []}


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
                instruction=_clean(row.get("proposed_instruction")),
                prefix=_clean(row.get("proposed_prefix_for_output_field")),
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
                instruction=_clean(basic.instruction), prefix=_clean(basic.prefix)
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

    def compile(
        self,
        student: Module,
        *,
        trainset: Sequence[Example],
        teacher: Module | None = None,
        valset: Sequence[Example] | None = None,
        eval_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Module:
        """Optimize ``student``'s instructions on ``trainset``; return the best program.

        ``student`` may already have demos. ``eval_kwargs`` go to :class:`Evaluate`
        (``num_threads``, ``display_progress`` ...). ``teacher`` and ``valset`` are
        accepted for the common call shape and not used: COPRO scores on the trainset.
        """
        self._refuse_options(kwargs)
        module = student.deepcopy()
        names = [name for name, _ in module.named_predictors()]
        if not names:
            raise ConfigurationError(f"{type(student).__name__} has no predictors to optimize")
        evaluate = Evaluate(devset=list(trainset), metric=self.metric, **dict(eval_kwargs or {}))
        predictors = dict(module.named_predictors())
        current = {name: instruction_of(predictors[name]) for name in names}

        latest = {name: self.propose_initial(current[name]) for name in names}
        every = {name: list(candidates) for name, candidates in latest.items()}
        evaluated: dict[str, dict[InstructionCandidate, ScoredCandidate]] = {n: {} for n in names}
        results_best = {name: _empty_stats() for name in names}
        results_latest = {name: _empty_stats() for name in names}
        total_calls = 0

        for depth in range(self.depth):
            logger.info("Iteration Depth: %d/%d.", depth + 1, self.depth)
            for p_i, name in enumerate(names):
                # With several predictors, every candidate is scored again: the others'
                # best settings may have changed since.
                pool = latest[name] if len(names) == 1 else every[name]
                latest_scores: list[float] = []
                for c_i, candidate in enumerate(pool):
                    logger.info(
                        "At Depth %d/%d, Evaluating Prompt Candidate #%d/%d for Predictor %d of %d.",
                        depth + 1,
                        self.depth,
                        c_i + 1,
                        len(pool),
                        p_i + 1,
                        len(names),
                    )
                    selection = {**current, name: candidate}
                    score = self.score_candidate(module, selection, evaluate)
                    total_calls += 1
                    seen = evaluated[name].get(candidate)
                    if seen is None or seen.score < score:
                        evaluated[name][candidate] = ScoredCandidate(
                            predictor=name,
                            instruction=candidate.instruction,
                            prefix=candidate.prefix,
                            score=score,
                            depth=depth,
                            selection=selection,
                        )
                    if len(pool) - self.breadth <= c_i:
                        latest_scores.append(score)
                    emit(
                        "optimization_iteration",
                        {
                            "optimizer": type(self).__name__,
                            "iteration": total_calls,
                            "depth": depth,
                            "predictor": name,
                            "candidate": candidate.model_dump(),
                            "evaluation_score": score,
                            "best_score": max(c.score for c in evaluated[name].values()),
                        },
                    )
                if self.track_stats:
                    _record_stats(results_latest[name], depth, latest_scores)
                # Keep this predictor's best before tuning the next one.
                best = max(evaluated[name].values(), key=lambda c: c.score)
                current[name] = InstructionCandidate(
                    instruction=best.instruction, prefix=best.prefix
                )

            if depth == self.depth - 1:
                break
            for name in names:
                attempts = list(evaluated[name].values())
                if self.track_stats:
                    top = sorted((c.score for c in attempts), reverse=True)[:10]
                    _record_stats(results_best[name], depth, top)
                latest[name] = self.propose_from_attempts(attempts)
                every[name].extend(latest[name])

        return self._best_program(
            module, names, evaluated, total_calls, results_best, results_latest
        )

    def _best_program(
        self,
        module: Module,
        names: list[str],
        evaluated: dict[str, dict[InstructionCandidate, ScoredCandidate]],
        total_calls: int,
        results_best: dict[str, dict[str, list[float]]],
        results_latest: dict[str, dict[str, list[float]]],
    ) -> Module:
        records: list[ScoredCandidate] = []
        for name in names:
            records.extend(evaluated[name].values())
            if self.track_stats:
                top = sorted((c.score for c in evaluated[name].values()), reverse=True)[:10]
                _record_stats(results_best[name], self.depth - 1, top)
        records.sort(key=lambda c: c.score, reverse=True)
        records = _drop_duplicates(records)
        candidates = [
            ProgramRecord(
                score=record.score,
                program=apply_instructions(module, record.selection),
                instruction=record.instruction,
                prefix=record.prefix,
                depth=record.depth,
                predictor=record.predictor,
            )
            for record in records
        ]
        best_program: Any = candidates[0]["program"]
        best_program.candidate_programs = candidates
        best_program.total_calls = total_calls
        if self.track_stats:
            best_program.results_best = results_best
            best_program.results_latest = results_latest
        return best_program


def _drop_duplicates(records: list[ScoredCandidate]) -> list[ScoredCandidate]:
    """Drop candidates that tie in score with an identical program (sorted input)."""
    kept: list[ScoredCandidate] = []
    batch: list[ScoredCandidate] = []
    batch_score: float | None = None
    for record in records:
        if record.score != batch_score:
            batch, batch_score = [record], record.score
            kept.append(record)
        elif all(other.selection != record.selection for other in batch):
            batch.append(record)
            kept.append(record)
    return kept
