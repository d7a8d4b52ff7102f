"""``InferRules``: bootstrap demos, then have the LM induce natural-language rules from
the training examples and append them to each predictor's instructions.

As DSPy 3.4.1's: without a valset the trainset is split in halves (bootstrap on the
first, score on the second). ``num_candidates`` times, every predictor gets rules
induced from the training examples by a ``ChainOfThought`` at ``temperature=1.0`` and a
fresh ``rollout_id`` (drawn from one ``random.Random(0)`` per optimizer, so cached
answers are not reused); each candidate is scored on the valset. As in DSPy, whose
candidates share one signature class, the program returned is the first best-scoring
candidate carrying the *last* candidate's rules (all candidates hold the same demos);
unlike DSPy, the student's own signature is left untouched. A queued run executes this
whole ``compile`` as one task.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from dspyq.core.chain_of_thought import ChainOfThought
from dspyq.core.context import context, current
from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.core.predict import Predict
from dspyq.core.signature import InputField, OutputField, Signature
from dspyq.errors import AdapterParseError, BadRequestError, ConfigurationError, DspyqError
from dspyq.optimize.bootstrap import BootstrapFewShot
from dspyq.optimize.evaluate import Evaluate
from dspyq.optimize.teleprompter import CompileInputs

__all__ = ["InferRules", "RulesInductionProgram"]

logger = logging.getLogger(__name__)

_RULES_HEADER = "Please adhere to the following rules when making your prediction:"


class RulesInductionProgram(Module):
    """Induce ``num_rules`` rules from examples' text, one fresh rollout per call."""

    def __init__(self, num_rules: int, teacher_settings: Mapping[str, Any] | None = None) -> None:
        super().__init__()

        class CustomRulesInduction(Signature):
            examples_text: str = InputField(desc="Text containing examples")
            natural_language_rules: str = OutputField(desc="Induced natural language rules")

        instructions = (
            f"Given a set of examples, extract a list of {num_rules} concise and "
            "non-redundant natural language rules that provide clear guidance for performing "
            "the task. All rules should be actionable for a well-specified scope of examples "
            "of this general kind of task."
        )
        self.rules_induction = ChainOfThought(CustomRulesInduction.with_instructions(instructions))
        self.teacher_settings = dict(teacher_settings or {})
        self.rng = random.Random(0)

    def forward(self, examples_text: str) -> str:
        with context(**self.teacher_settings):
            lm = current().lm
            if lm is None:
                raise ConfigurationError("InferRules needs an LM to induce rules: configure one")
            rollout = lm.copy(rollout_id=self.rng.randint(0, 10**9), temperature=1.0)
            with context(lm=rollout):
                rules = self.rules_induction(examples_text=examples_text).natural_language_rules
        return str(rules).strip()


class InferRules(BootstrapFewShot):
    """``BootstrapFewShot`` followed by a search over induced rules (module docstring).

    Takes ``BootstrapFewShot``'s options, plus ``num_candidates`` rule sets to try,
    ``num_rules`` per predictor asked for and ``num_threads`` for scoring.
    """

    def __init__(
        self,
        num_candidates: int = 10,
        num_rules: int = 10,
        num_threads: int | None = None,
        teacher_settings: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(teacher_settings=teacher_settings, **kwargs)
        # Bootstrapping stays one by one, as DSPy's; num_threads is for scoring.
        self.num_threads = None
        self.eval_threads = num_threads
        self.num_candidates = num_candidates
        self.num_rules = num_rules
        self.rules_induction_program = RulesInductionProgram(num_rules, teacher_settings)

    def _compile(self, inputs: CompileInputs) -> Module:
        trainset, valset = list(inputs.trainset), inputs.valset
        if valset is None:
            half = int(0.5 * len(trainset))
            trainset, valset = trainset[:half], trainset[half:]
        super()._compile(CompileInputs(inputs.student, trainset, inputs.teacher))
        original = self.student.deepcopy()
        best_score, best_program = -math.inf, None
        for number in range(1, self.num_candidates + 1):
            candidate = original.deepcopy()
            for predictor in candidate.predictors():
                rules = self.induce_natural_language_rules(predictor, trainset)
                self.update_program_instructions(predictor, rules)
            score = self.evaluate_program(candidate, list(valset))
            if score > best_score:
                best_score, best_program = score, candidate
            logger.info(
                "Evaluated Candidate %d with score %s. Current best score: %s",
                number,
                score,
                best_score,
            )
        logger.info("Final best score: %s", best_score)
        if best_program is None:  # num_candidates < 1: DSPy returns None; say why instead
            raise ConfigurationError("InferRules needs num_candidates >= 1")
        # DSPy edits one signature class that every candidate shares, so the program it
        # returns has the best candidate's demos under the last candidate's rules.
        for kept, last in zip(best_program.predictors(), candidate.predictors(), strict=True):
            kept.signature = last.signature
        return best_program

    def induce_natural_language_rules(self, predictor: Predict, trainset: Sequence[Example]) -> str:
        """Rules from the training examples, dropping the last example while the prompt
        does not fit (or its answer does not parse), as DSPy does."""
        demos = self.get_predictor_demos(trainset, predictor)
        while True:
            try:
                return str(self.rules_induction_program(self.format_examples(demos, predictor)))
            except (AdapterParseError, BadRequestError, ValueError) as error:
                if len(demos) <= 1:
                    raise DspyqError(
                        "Failed to generate natural language rules since a single example "
                        "couldn't fit in the model's context window."
                    ) from error
                demos = demos[:-1]

    @staticmethod
    def update_program_instructions(predictor: Predict, rules: str) -> None:
        instructions = f"{predictor.signature.instructions}\n\n{_RULES_HEADER}\n{rules}"
        predictor.signature = predictor.signature.with_instructions(instructions)

    @staticmethod
    def format_examples(demos: Sequence[Mapping[str, Any]], predictor: Predict) -> str:
        inputs, outputs = predictor.signature.input_fields, predictor.signature.output_fields
        text = ""
        for demo in demos:
            shown_in = "\n".join(f"{k}: {v}" for k, v in demo.items() if k in inputs)
            shown_out = "\n".join(f"{k}: {v}" for k, v in demo.items() if k in outputs)
            text += f"Input Fields:\n{shown_in}\n\n=========\nOutput Fields:\n{shown_out}\n\n"
        return text

    @staticmethod
    def get_predictor_demos(
        trainset: Sequence[Example], predictor: Predict
    ) -> list[dict[str, Any]]:
        fields = {**predictor.signature.input_fields, **predictor.signature.output_fields}
        return [{k: v for k, v in example.items() if k in fields} for example in trainset]

    def evaluate_program(self, program: Module, devset: list[Example]) -> float:
        max_errors = self.max_errors
        if max_errors is None:
            max_errors = current().get("max_errors")
        evaluate = Evaluate(
            devset=devset,
            metric=self.metric,
            num_threads=self.eval_threads,
            max_errors=max_errors,
            display_table=False,
        )
        return float(evaluate(program).score)
