"""Instruction proposals grounded in the data, the program and its demos (MIPROv2's step 2).

A simpler, faithful version of DSPy 3.4.1's ``GroundedProposer``: the prompt model may
first summarise the trainset (``use_dataset_summary``) and describe the program and the
predictor being tuned (``program_aware``), then writes one instruction per demo set,
shown up to three bootstrapped demos of that set and a randomly drawn tip. The
signatures' instructions and field descriptions are DSPy's, so the prompt model sees
the same requests. Each proposal runs on a copy of the prompt model with a fresh
``rollout_id`` and ``init_temperature``, so proposals are not answered from the cache.
"""

from __future__ import annotations

import inspect
import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic.fields import FieldInfo

from dspyq.core.chain_of_thought import ChainOfThought
from dspyq.core.context import context, current
from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.core.predict import Predict
from dspyq.core.signature import InputField, OutputField, Signature, field_extra, make_signature
from dspyq.optimize.dataset_summary import (
    DatasetDescriptor,
    DatasetDescriptorWithPriorObservations,
    ObservationSummarizer,
    create_dataset_summary,
    strip_prefix,
)

__all__ = [
    "TIPS",
    "DatasetDescriptor",
    "DatasetDescriptorWithPriorObservations",
    "DescribeModule",
    "DescribeProgram",
    "GroundedProposer",
    "ObservationSummarizer",
    "create_dataset_summary",
    "instruction_signature",
    "strip_prefix",
]

logger = logging.getLogger(__name__)

TIPS = {
    "none": "",
    "creative": "Don't be afraid to be creative when creating the new instruction!",
    "simple": "Keep the instruction clear and concise.",
    "description": "Make sure your instruction is very informative and descriptive.",
    "high_stakes": "The instruction should include a high stakes scenario in which the LM must solve the task!",
    "persona": 'Include a persona that is relevant to the task in the instruction (ie. "You are a ...")',
}
"""Tips drawn at random for each proposal, in DSPy's order (the draw depends on it)."""

_NO_DEMOS = "No task demos provided."


# --- describing the program -----------------------------------------------------------------


def _program_code_field() -> Any:
    return InputField(
        desc="Pseudocode for a language model program designed to solve a particular task.",
        prefix="PROGRAM CODE:",
    )


def _program_example_field() -> Any:
    return InputField(desc="An example of the program in use.", prefix="EXAMPLE OF PROGRAM IN USE:")


class DescribeProgram(Signature):
    """Below is some pseudo-code for a pipeline that solves tasks with calls to language models. Please describe what type of task this program appears to be designed to solve, and how it appears to work."""

    program_code: str = _program_code_field()
    program_example: str = _program_example_field()
    program_description: str = OutputField(
        desc="Describe what task the program is designed to solve, and how it goes about solving this task.",
        prefix="SUMMARY OF PROGRAM ABOVE:",
    )


class DescribeModule(Signature):
    """Below is some pseudo-code for a pipeline that solves tasks with calls to language models. Please describe the purpose of one of the specified module in this pipeline."""

    program_code: str = _program_code_field()
    program_example: str = _program_example_field()
    program_description: str = InputField(
        desc="Summary of the task the program is designed to solve, and how it goes about solving it.",
        prefix="SUMMARY OF PROGRAM ABOVE:",
    )
    module: str = InputField(
        desc="The module in the program that we want to describe.", prefix="MODULE:"
    )
    module_description: str = OutputField(
        desc="Description of the module's role in the broader program.",
        prefix="MODULE DESCRIPTION:",
    )


def program_source(program: Module) -> str:
    """Pseudo-code of the program: each predictor's signature, then the module's own code
    (plain ``Predict`` / ``ChainOfThought`` programs have none worth showing)."""
    parts = [
        f"{name} = {type(predictor).__name__}({predictor.signature.signature!r})\n"
        f"    instructions: {predictor.signature.instructions}"
        for name, predictor in program.named_predictors()
    ]
    if not isinstance(program, Predict | ChainOfThought):
        try:
            parts.append(inspect.getsource(type(program)))
        except (OSError, TypeError) as exc:
            logger.debug("no source for %s: %s", type(program).__name__, exc)
    return "\n\n".join(parts)


# --- the instruction request ------------------------------------------------------------------


def instruction_signature(
    use_dataset_summary: bool = True,
    program_aware: bool = True,
    use_instruct_history: bool = True,
    use_tip: bool = True,
) -> type[Signature]:
    """DSPy's ``GenerateSingleModuleInstruction``, with the optional inputs switched on or off."""
    fields: dict[str, tuple[Any, FieldInfo]] = {}

    def add_input(name: str, desc: str, prefix: str) -> None:
        fields[name] = (str, InputField(desc=desc, prefix=prefix))

    if use_dataset_summary:
        add_input(
            "dataset_description",
            "A description of the dataset that we are using.",
            "DATASET SUMMARY:",
        )
    if program_aware:
        add_input(
            "program_code",
            "Language model program designed to solve a particular task.",
            "PROGRAM CODE:",
        )
        add_input(
            "program_description",
            "Summary of the task the program is designed to solve, and how it goes about solving it.",
            "PROGRAM DESCRIPTION:",
        )
        add_input("module", "The module to create an instruction for.", "MODULE:")
        add_input(
            "module_description",
            "Description of the module to create an instruction for.",
            "MODULE DESCRIPTION:",
        )
    add_input("task_demos", "Example inputs/outputs of our module.", "TASK DEMO(S):")
    if use_instruct_history:
        add_input(
            "previous_instructions",
            "Previous instructions we've attempted, along with their associated scores.",
            "PREVIOUS INSTRUCTIONS:",
        )
    add_input("basic_instruction", "Basic instruction.", "BASIC INSTRUCTION:")
    if use_tip:
        add_input("tip", "A suggestion for how to go about generating the new instruction.", "TIP:")
    fields["proposed_instruction"] = (
        str,
        OutputField(
            desc="Propose an instruction that will be used to prompt a Language Model to perform this task.",
            prefix="PROPOSED INSTRUCTION:",
        ),
    )
    return make_signature(
        fields,
        "Use the information below to learn about a task that we are trying to solve using "
        "calls to an LM, then generate a new instruction that will be used to prompt a "
        "Language Model to better solve the task.",
        signature_name="GenerateSingleModuleInstruction",
    )


def _demo_text(fields: Mapping[str, FieldInfo], demo: Any) -> str:
    return "\n".join(
        f"{field_extra(field).get('prefix', name)} {demo.get(name)}"
        for name, field in fields.items()
    )


class GroundedProposer:
    """Propose instructions for every predictor of a program (see the module docstring).

    ``rng`` drives the tips and rollout ids, so a seeded run proposes the same way.
    ``calls`` counts the prompt-model requests made.
    """

    def __init__(
        self,
        prompt_model: Any,
        program: Module,
        trainset: Sequence[Example],
        view_data_batch_size: int = 10,
        use_dataset_summary: bool = True,
        program_aware: bool = True,
        use_task_demos: bool = True,
        num_demos_in_context: int = 3,
        use_tip: bool = True,
        set_tip_randomly: bool = True,
        rng: random.Random | None = None,
        init_temperature: float = 1.0,
    ) -> None:
        self.prompt_model = prompt_model or current().lm
        self.program_aware = program_aware
        self.use_dataset_summary = use_dataset_summary
        self.use_task_demos = use_task_demos
        self.num_demos_in_context = num_demos_in_context
        self.use_tip = use_tip
        self.set_tip_randomly = set_tip_randomly
        self.rng = rng or random.Random()
        self.init_temperature = init_temperature
        self.calls = 0
        self.program_code = program_source(program) if program_aware else ""
        self.data_summary: str | None = None
        if use_dataset_summary:
            try:
                self.data_summary = create_dataset_summary(
                    trainset, view_data_batch_size, self.prompt_model
                )
            except Exception as exc:
                logger.warning("No dataset summary (%s); proposing without it.", exc)
                self.use_dataset_summary = False

    def propose_instructions_for_program(
        self,
        trainset: Sequence[Example],
        program: Module,
        demo_candidates: Mapping[int, list[list[Any]]] | None,
        N: int,  # DSPy's name
        trial_logs: Mapping[int, Any] | None = None,
    ) -> dict[int, list[str]]:
        """Up to ``N`` instructions per predictor index, one per demo set."""
        if not demo_candidates:
            self.use_task_demos = False
            num_sets = N
        else:
            num_sets = max(len(demo_candidates[0]), 1)
        proposed: dict[int, list[str]] = {}
        for pred_i, _ in enumerate(program.predictors()):
            proposed[pred_i] = []
            for demo_set_i in range(min(N, num_sets)):
                tip = None
                if self.set_tip_randomly:
                    tip = TIPS[self.rng.choice(list(TIPS))]
                    self.use_tip = bool(tip)
                proposed[pred_i].append(
                    self.propose_instruction_for_predictor(
                        program, pred_i, demo_candidates, demo_set_i, tip
                    )
                )
        return proposed

    def propose_instruction_for_predictor(
        self,
        program: Module,
        pred_i: int,
        demo_candidates: Mapping[int, list[list[Any]]] | None,
        demo_set_i: int,
        tip: str | None = None,
    ) -> str:
        """One instruction for predictor ``pred_i``, shown demos from set ``demo_set_i`` on."""
        predictor = program.predictors()[pred_i]
        task_demos = self._task_demos(predictor, demo_candidates, pred_i, demo_set_i)
        rollout_lm = self._rollout_lm()
        with context(lm=rollout_lm):
            description, module_code, module_description = self._describe(predictor, task_demos)
            signature = instruction_signature(
                use_dataset_summary=self.use_dataset_summary,
                program_aware=self.program_aware,
                use_instruct_history=False,
                use_tip=self.use_tip,
            )
            values = {
                "dataset_description": self.data_summary,
                "program_code": self.program_code,
                "program_description": description,
                "module": module_code,
                "module_description": module_description,
                "task_demos": task_demos,
                "basic_instruction": predictor.signature.instructions,
                "tip": tip,
            }
            self.calls += 1
            prediction = Predict(signature)(
                **{name: values[name] for name in signature.input_fields}
            )
        return strip_prefix(prediction.proposed_instruction)

    def _rollout_lm(self) -> Any:
        """The prompt model with a fresh rollout id (no cached answer) at ``init_temperature``."""
        rollout_id = self.rng.randint(0, 10**9)
        copy = getattr(self.prompt_model, "copy", None)
        if copy is None:
            return self.prompt_model
        return copy(rollout_id=rollout_id, temperature=self.init_temperature)

    def _task_demos(
        self,
        predictor: Predict,
        demo_candidates: Mapping[int, list[list[Any]]] | None,
        pred_i: int,
        demo_set_i: int,
    ) -> str:
        """Bootstrapped demos from this set and the following ones (wrapping around)."""
        if not self.use_task_demos or not demo_candidates or demo_set_i == 0:
            return _NO_DEMOS
        sets = demo_candidates[pred_i]
        ordered = [sets[demo_set_i], *sets[demo_set_i + 1 :], *sets[:demo_set_i]]
        shown: list[str] = []
        for demo_set in ordered:
            for demo in demo_set:
                if "augmented" in demo and len(shown) < self.num_demos_in_context:
                    shown.append(_demo_text(predictor.signature.fields, demo))
        return "\n\n".join(shown) + "\n\n" if shown else _NO_DEMOS

    def _describe(self, predictor: Predict, task_demos: str) -> tuple[str, str, str]:
        """(program description, module pseudo-code, module description); placeholders when
        not program-aware or when the prompt model fails (then no longer program-aware)."""
        if not self.program_aware:
            return "Not available", "Not provided", "Not provided"
        try:
            self.calls += 1
            description = strip_prefix(
                Predict(DescribeProgram)(
                    program_code=self.program_code, program_example=task_demos
                ).program_description
            )
            inputs = ", ".join(predictor.signature.input_fields)
            outputs = ", ".join(predictor.signature.output_fields)
            module_code = f"{type(predictor).__name__}({inputs}) -> {outputs}"
            self.calls += 1
            module_description = str(
                Predict(DescribeModule)(
                    program_code=self.program_code,
                    program_example=task_demos,
                    program_description=description,
                    module=module_code,
                ).module_description
            )
        except Exception as exc:
            logger.warning("Program description failed (%s); proposing without it.", exc)
            self.program_aware = False
            return "Not available", "Not provided", "Not provided"
        return description, module_code, module_description
