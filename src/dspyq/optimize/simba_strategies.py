"""SIMBA's pieces: the resampling LMs, the scored run of one example, and the two
strategies that turn a bucket of trajectories into a better candidate program.

As DSPy 3.4.1's ``simba_utils``: ``append_a_demo`` keeps the best trajectory's last call
of every predictor as an augmented demo; ``append_a_rule`` asks the prompt model to
contrast the best and the worst trajectory (:class:`OfferFeedback`) and appends its
advice to each predictor's instructions.
"""

from __future__ import annotations

import inspect
import json
import logging
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

from dspyq.adapters.base import field_description_block
from dspyq.core.context import context, current
from dspyq.core.example import Example, Prediction
from dspyq.core.module import Module
from dspyq.core.predict import Predict
from dspyq.core.signature import InputField, OutputField, Signature

__all__ = [
    "OfferFeedback",
    "append_a_demo",
    "append_a_rule",
    "inspect_modules",
    "prepare_models_for_resampling",
    "recursive_mask",
    "wrap_program",
]

logger = logging.getLogger(__name__)

Strategy = Callable[..., bool]
Outcome = dict[str, Any]


def prepare_models_for_resampling(
    program: Module, n: int, teacher_settings: Mapping[str, Any] | None = None
) -> list[Any]:
    """``n`` LMs with consecutive rollout ids from the program's (or the configured) LM's
    own: the teacher's LM first when there is one, then copies at temperature 1.0."""
    lm = program.get_lm() or current().lm
    start = lm.kwargs.get("rollout_id", 0)
    rollout_ids = [start + offset for offset in range(n)]
    models: list[Any] = []
    if teacher_settings:
        teacher_lm = teacher_settings.get("lm") or lm
        teacher_lm.kwargs["rollout_id"] = rollout_ids[0]  # in place, as DSPy does
        models.append(teacher_lm)
    taken = len(models)
    models.extend(lm.copy(rollout_id=rid, temperature=1.0) for rid in rollout_ids[taken:])
    return models


def wrap_program(program: Module, metric: Callable[..., Any]) -> Callable[[Example], Outcome]:
    """``example -> outcome``: the prediction (``None`` if the program failed), its trace,
    the metric's score (0.0 if it failed) and the metric's other fields."""

    def run(example: Example) -> Outcome:
        prediction = None
        with context(trace=[]):
            try:
                prediction = program(**example.inputs())
            except Exception as error:
                logger.warning(error)
            trace = list(current().trace or [])
        score: Any = 0.0
        metadata: dict[str, Any] = {}
        try:
            output = metric(example, prediction)
            if isinstance(output, int | float):
                score = output
            elif isinstance(output, Prediction):
                if not hasattr(output, "score"):
                    raise ValueError(
                        "When `metric` returns a `dspy.Prediction`, it must contain a "
                        "`score` field."
                    )
                score = output.score
                metadata = {k: v for k, v in output.items() if k != "score"}
        except Exception as error:
            logger.warning(error)
        return {
            "prediction": prediction,
            "trace": trace,
            "score": score,
            "example": example,
            "output_metadata": metadata,
        }

    return run


def append_a_demo(demo_input_field_maxlen: int) -> Strategy:
    """The strategy that adds the best trajectory's calls as demos, inputs cut to
    ``demo_input_field_maxlen`` characters."""

    def append_a_demo_(bucket: list[Outcome], system: Module, **kwargs: Any) -> bool:
        predictor2name, name2predictor = kwargs["predictor2name"], kwargs["name2predictor"]
        good = bucket[0]
        if good["score"] <= kwargs["batch_10p_score"]:
            logger.info(
                "Skipping appending a demo as good score %s is at or below the 10th percentile.",
                good["score"],
            )
            return False
        name2demo: dict[str, Example] = {}
        for predictor, inputs, outputs in good["trace"]:
            for key, value in inputs.items():
                if demo_input_field_maxlen and len(str(value)) > demo_input_field_maxlen:
                    cut = str(value)[:demo_input_field_maxlen]
                    inputs[key] = f"{cut}\n\t\t... <TRUNCATED FOR BREVITY>"
            demo = Example(augmented=True, **inputs, **dict(outputs.items()))
            name = predictor2name.get(id(predictor))
            if name is not None:
                name2demo[name] = demo  # the last call of each predictor wins
        for name, demo in name2demo.items():
            name2predictor[name].demos.append(demo)
        logger.info("Added %d demos (one each) across all predictors.", len(name2demo))
        return True

    return append_a_demo_


def append_a_rule(bucket: list[Outcome], system: Module, **kwargs: Any) -> bool:
    """The strategy that appends the prompt model's advice to each predictor's
    instructions, from the contrast of the bucket's best and worst trajectories."""
    predictor2name = kwargs["predictor2name"]
    low, high = kwargs["batch_10p_score"], kwargs["batch_90p_score"]
    prompt_model = kwargs["prompt_model"] or current().lm
    good, bad = bucket[0], bucket[-1]
    example = good["example"]
    if good["score"] <= low or bad["score"] >= high:
        logger.info(
            "Skipping rule generation as good score %s is at or below the 10th percentile "
            "*or* bad score %s is at or above the 90th percentile.",
            good["score"],
            bad["score"],
        )
        return False
    if good["score"] <= bad["score"]:
        # No contrast: blank the side that tells least (the bad one if all runs did well).
        blank = bad if good["score"] > high else good
        blank.update(trace=[], score="N/A", prediction={"N/A": "Prediction not available"})

    def trajectory(outcome: Outcome) -> list[dict[str, Any]]:
        return [
            {"module_name": predictor2name[id(p)], "inputs": i, "outputs": dict(o.items())}
            for p, i, o in outcome["trace"]
            if id(p) in predictor2name
        ]

    fields: dict[str, Any] = {
        "program_code": inspect.getsource(type(system)),
        "modules_defn": inspect_modules(system),
        "program_inputs": dict(example.inputs().items()),
        "oracle_metadata": dict(example.labels().items()),
        "better_program_trajectory": trajectory(good),
        "better_program_outputs": _as_dict(good["prediction"]),
        "worse_program_trajectory": trajectory(bad),
        "worse_program_outputs": _as_dict(bad["prediction"] or {}),
        "worse_reward_value": bad["score"],
        "better_reward_value": good["score"],
        "worse_reward_info": bad["output_metadata"],
        "better_reward_info": good["output_metadata"],
        "module_names": [name for name, _ in system.named_predictors()],
    }
    shown = {k: v if isinstance(v, str) else _json(v) for k, v in fields.items()}
    with context(trace=[], lm=prompt_model):
        advice = Predict(OfferFeedback)(**shown).module_advice
    for name, predictor in system.named_predictors():
        if name in advice:
            logger.info("Advice for %s: %s", name, advice[name])
            instructions = predictor.signature.instructions + "\n\n" + advice[name]
            predictor.signature = predictor.signature.with_instructions(instructions)
    return True


def _as_dict(value: Any) -> dict[str, Any]:
    return dict(value.items()) if hasattr(value, "items") else dict(value)


def _json(value: Any) -> str:
    """Two-space indented JSON, unserializable leaves named by their type."""
    return json.dumps(recursive_mask(value), indent=2, ensure_ascii=False)


def recursive_mask(value: Any) -> Any:
    """``value`` with every leaf JSON cannot hold replaced by ``<non-serializable: T>``."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        pass
    if isinstance(value, dict):
        return {k: recursive_mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(recursive_mask(v) for v in value)
    return f"<non-serializable: {type(value).__name__}>"


def inspect_modules(program: Module) -> str:
    """Each predictor's name, fields and instructions, between dashed lines."""
    separator = "-" * 80
    indent = "\n\t\t"
    parts = [separator]
    for name, predictor in program.named_predictors():
        signature = predictor.signature
        instructions = indent.join(["", *textwrap.dedent(signature.instructions).splitlines()])
        inputs = field_description_block(signature.input_fields).splitlines()
        outputs = field_description_block(signature.output_fields).splitlines()
        parts += [
            f"Module {name}",
            "\n\tInput Fields:",
            indent.join(["", *inputs]),
            "\tOutput Fields:",
            indent.join(["", *outputs]),
            f"\tOriginal Instructions: {instructions}",
            separator,
        ]
    return "\n".join(part.strip("\n") for part in parts)


_BLAME = "The trajectory of the program's execution, showing each module's I/O"
_OUTPUTS = "The outputs of the program that we are analyzing"
_REWARD = "The reward value assigned to the program's outputs"
_INFO = "Additional information that might be helpful to understanding the assigned reward value."


class OfferFeedback(Signature):
    """
    You will be given two trajectories of an LLM-driven program's execution. Your goal is to help the program's modules
    build up experience on how to maximize the reward value assigned to the program's outputs if it were to receive
    similar inputs in the future.

    The module won't see its own history. It will rely on your advice balancing being concrete and being generalizable.

    In your advice:
    - Avoid boilerplate. Offer advice that would change the module's behavior for the better in the future.
    - Ensure that advice offered to a module M is specific to that M's specific sub-task, not the overall program.
    - Rely on contrasting the behavior of the worse trajectory against the better trajectory in making recommendations.
    - Ensure each unique module name appears exactly once as a key in the advice dictionary.
    """

    program_code: str = InputField(desc="The code of the program that we are analyzing")
    modules_defn: str = InputField(
        desc="The definition of each module in the program, including its I/O"
    )
    program_inputs: str = InputField(desc="The inputs to the program that we are analyzing")
    oracle_metadata: str = InputField(
        desc="Any (hidden) metadata about the training set instance we're analyzing"
    )
    worse_program_trajectory: str = InputField(desc=_BLAME)
    worse_program_outputs: str = InputField(desc=_OUTPUTS)
    worse_reward_value: float = InputField(desc=_REWARD)
    worse_reward_info: str = InputField(desc=_INFO)
    better_program_trajectory: str = InputField(desc=_BLAME)
    better_program_outputs: str = InputField(desc=_OUTPUTS)
    better_reward_value: float = InputField(desc=_REWARD)
    better_reward_info: str = InputField(desc=_INFO)
    module_names: list[str] = InputField(
        desc="The names of the modules in the program, for which we seek advice"
    )
    discussion: str = OutputField(
        desc="Discussing blame of where each module went wrong, if it did"
    )
    module_advice: dict[str, str] = OutputField(
        desc="For each module, describe very concretely: If the module receives ${description "
        "of input or patterns therein}, then it should ${description of content, behavior, or "
        "strategies to adopt and/or others to avoid}. Basically, your advice be such that if "
        "the module has access to your tip, it would be much more likely to act like the "
        "successful trajectory rather than the lower-scoring trajectory."
    )
