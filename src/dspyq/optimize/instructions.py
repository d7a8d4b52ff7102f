"""Instruction candidates: what COPRO and MIPROv2 propose, score and apply to programs.

An :class:`InstructionCandidate` is an instruction and the prefix of a predictor's
last output field; :func:`apply_instructions` sets such candidates on a copy of a
program. COPRO's proposal signatures are here too, with the records both optimizers
hang off their best program (:class:`ProgramRecord`).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from dspyq.core.module import Module
from dspyq.core.predict import Predict
from dspyq.core.signature import InputField, OutputField, Signature, field_extra

__all__ = [
    "BasicGenerateInstruction",
    "GenerateInstructionGivenAttempts",
    "InstructionCandidate",
    "ProgramRecord",
    "ScoredCandidate",
    "apply_instructions",
    "clean_proposal",
    "drop_duplicates",
    "empty_stats",
    "instruction_of",
    "record_stats",
]

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
    iteration: int = 0
    """The candidate's number in the run (the scoring that gave this score)."""


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


def clean_proposal(value: Any) -> str:
    # Prompt models often quote their proposals; DSPy strips quotes, then whitespace.
    return str(value if value is not None else "").strip('"').strip()


# --- COPRO's statistics and candidate list, as DSPy reports them ----------------------


def _spread(scores: Sequence[float]) -> dict[str, float]:
    return {
        "max": max(scores),
        "average": sum(scores) / len(scores),
        "min": min(scores),
        "std": statistics.pstdev(scores),  # numpy's std, as DSPy reports
    }


def record_stats(table: dict[str, list[float]], depth: int, scores: Sequence[float]) -> None:
    table["depth"].append(depth)
    for key, value in _spread(scores).items():
        table[key].append(value)


def empty_stats() -> dict[str, list[float]]:
    return {"depth": [], "max": [], "average": [], "min": [], "std": []}


def drop_duplicates(records: list[ScoredCandidate]) -> list[ScoredCandidate]:
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
