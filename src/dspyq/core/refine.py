"""BestOfN and Refine: run a module several times and keep the best-rewarded prediction.

Both mirror DSPy 3.4.1. Each attempt runs a fresh copy of the module with its LM copied
at ``temperature=1.0`` and a distinct ``rollout_id`` (so cached answers are not reused);
the first prediction whose reward reaches ``threshold`` wins, else the best one seen.
Refine also asks the LM, after a failed attempt, for per-predictor advice and passes it
to the next attempt as a ``hint_`` input.
"""

from __future__ import annotations

import inspect
import json
import textwrap
from collections.abc import Callable
from typing import Any

from dspyq.core.context import context, current
from dspyq.core.example import Prediction
from dspyq.core.module import Module
from dspyq.core.predict import Predict
from dspyq.core.signature import InputField, OutputField, Signature
from dspyq.core.types import annotation_name
from dspyq.errors import ConfigurationError

RewardFn = Callable[[dict[str, Any], Prediction], float]


class OfferFeedback(Signature):
    """
    In the discussion, assign blame to each module that contributed to the final reward being below the threshold, if
    any. Then, prescribe concrete advice of how the module should act on its future input when we retry the process, if
    it were to receive the same or similar inputs. If a module is not to blame, the advice should be N/A.
    The module will not see its own history, so it needs to rely on entirely concrete and actionable advice from you
    to avoid the same mistake on the same or similar inputs.
    """

    program_code: str = InputField(desc="The code of the program that we are analyzing")
    modules_defn: str = InputField(
        desc="The definition of each module in the program, including its I/O"
    )
    program_inputs: str = InputField(desc="The inputs to the program that we are analyzing")
    program_trajectory: str = InputField(
        desc="The trajectory of the program's execution, showing each module's I/O"
    )
    program_outputs: str = InputField(desc="The outputs of the program that we are analyzing")
    reward_code: str = InputField(desc="The code of the reward function that we are analyzing")
    target_threshold: float = InputField(desc="The target threshold for the reward function")
    reward_value: float = InputField(desc="The reward value assigned to the program's outputs")
    module_names: list[str] = InputField(
        desc="The names of the modules in the program, for which we seek advice"
    )
    discussion: str = OutputField(
        desc="Discussing blame of where each module went wrong, if it did"
    )
    advice: dict[str, str] = OutputField(
        desc="For each module, describe very concretely, in this order: the specific scenarios in which it has made "
        "mistakes in the past and what each mistake was, followed by what it should do differently in that kind of"
        "scenario in the future. If the module is not to blame, write N/A."
    )


class BestOfN(Module):
    """Run ``module`` up to ``N`` times; return the first prediction reaching ``threshold``.

    ``reward_fn(inputs, prediction) -> float``. If no attempt reaches the threshold the
    best-rewarded prediction is returned (None if every attempt failed). Failing attempts
    are logged and skipped until DSPy's ``fail_count`` rule re-raises (see below).
    """

    def __init__(
        self,
        module: Module,
        N: int,
        reward_fn: RewardFn,
        threshold: float,
        fail_count: int | None = None,
    ) -> None:
        super().__init__()
        self.module = module
        # Kept in a closure so it is not mistaken for a sub-module or parameter.
        self.reward_fn: Callable[..., float] = lambda *args: reward_fn(*args)
        self.threshold = threshold
        self.N = N
        self.fail_count = fail_count or N

    def _rollout_lm(self) -> tuple[Any, int]:
        lm = self.module.get_lm() or current().lm
        if lm is None:
            raise ConfigurationError(
                f"{type(self).__name__} needs an LM: set one on the module or configure one"
            )
        start = int((getattr(lm, "kwargs", {}) or {}).get("rollout_id", 0) or 0)
        return lm, start

    def _count_failure(self, attempt: int, error: Exception) -> None:
        """DSPy's rule, kept exactly: re-raise once the attempt index exceeds what is left
        of ``fail_count``, which every failure lowers, for later calls too."""
        if attempt > self.fail_count:
            raise error
        self.fail_count -= 1

    def _attempt(self, lm: Any, rollout_id: int) -> Module:
        copy = self.module.deepcopy()
        copy.set_lm(lm.copy(rollout_id=rollout_id, temperature=1.0))
        return copy

    def forward(self, **kwargs: Any) -> Prediction | None:
        lm, start = self._rollout_lm()
        best: Prediction | None = None
        best_trace: list[Any] = []
        best_reward = -float("inf")
        for attempt in range(self.N):
            rollout_id = start + attempt
            module = self._attempt(lm, rollout_id)
            try:
                with context(trace=[]) as config:
                    prediction = module(**kwargs)
                    trace = list(config.trace or [])
                    reward = self.reward_fn(kwargs, prediction)
            except Exception as error:
                # DSPy prints this line (no logging): programs capturing stdout see it too.
                print(
                    f"BestOfN: Attempt {attempt + 1} failed with rollout id {rollout_id}: {error}"
                )
                self._count_failure(attempt, error)
                continue
            if reward > best_reward:
                best, best_trace, best_reward = prediction, trace, reward
            if reward >= self.threshold:
                break
        _extend_trace(best_trace)
        return best


class Refine(BestOfN):
    """BestOfN that learns between attempts: after a below-threshold attempt, an LM
    reviews the run and the next attempt gets per-predictor advice as a ``hint_`` input.
    """

    def __init__(
        self,
        module: Module,
        N: int,
        reward_fn: RewardFn,
        threshold: float,
        fail_count: int | None = None,
    ) -> None:
        super().__init__(module, N, reward_fn, threshold, fail_count)
        self.module_code = _source_of(type(module))
        self.reward_fn_code = _source_of(reward_fn)

    def forward(self, **kwargs: Any) -> Prediction | None:
        lm, start = self._rollout_lm()
        adapter = current().adapter or _chat_adapter()
        best: Prediction | None = None
        best_trace: list[Any] = []
        best_reward = -float("inf")
        advice: dict[str, str] | None = None
        for attempt in range(self.N):
            rollout_id = start + attempt
            module = self._attempt(lm, rollout_id)
            names = {id(p): name for name, p in module.named_predictors()}
            try:
                overrides: dict[str, Any] = {"trace": []}
                if advice:
                    overrides["adapter"] = HintAdapter(adapter, _hints_by_signature(module, advice))
                with context(**overrides) as config:
                    prediction = module(**kwargs)
                    trace = list(config.trace or [])
                    reward = self.reward_fn(kwargs, prediction)
                if reward > best_reward:
                    best, best_trace, best_reward = prediction, trace, reward
                if reward >= self.threshold or attempt == self.N - 1:
                    break
                advice = self._advise(lm, module, names, kwargs, trace, prediction, reward)
            except Exception as error:
                print(f"Refine: Attempt failed with rollout id {rollout_id}: {error}")
                self._count_failure(attempt, error)
        _extend_trace(best_trace)
        return best

    def _advise(
        self,
        lm: Any,
        module: Module,
        names: dict[int, str],
        inputs: dict[str, Any],
        trace: list[Any],
        prediction: Prediction,
        reward: float,
    ) -> dict[str, str]:
        """Ask ``lm`` which predictor to blame and what each should do next time."""
        trajectory = [
            {
                "module_name": names.get(id(predictor), "?"),
                "inputs": step_inputs,
                "outputs": dict(outputs),
            }
            for predictor, step_inputs, outputs in trace
        ]
        feedback = Predict(OfferFeedback)(
            program_code=self.module_code,
            modules_defn=describe_modules(module),
            program_inputs=_as_json(inputs),
            program_trajectory=_as_json(trajectory),
            program_outputs=_as_json(dict(prediction)),
            reward_code=self.reward_fn_code,
            target_threshold=self.threshold,
            reward_value=reward,
            module_names=[name for name, _ in module.named_predictors()],
            lm=lm,
        )
        advice = feedback.advice
        return {str(k): str(v) for k, v in advice.items()} if isinstance(advice, dict) else {}


class HintAdapter:
    """Wraps an adapter so each predictor's call gets its advice as a ``hint_`` input."""

    def __init__(self, adapter: Any, hints: dict[int, str]) -> None:
        """``hints`` maps ``id(signature)`` of each predictor to its advice."""
        self.adapter = adapter
        self.hints = hints

    def _with_hint(
        self, signature: type[Signature], inputs: dict[str, Any]
    ) -> tuple[type[Signature], dict[str, Any]]:
        hinted = signature.append(
            "hint_", InputField(desc="A hint to the module from an earlier run")
        )
        return hinted, {**inputs, "hint_": self.hints.get(id(signature), "N/A")}

    def __call__(
        self,
        lm: Any,
        lm_kwargs: dict[str, Any],
        signature: type[Signature],
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        hinted, hinted_inputs = self._with_hint(signature, inputs)
        result: list[dict[str, Any]] = self.adapter(
            lm, lm_kwargs=lm_kwargs, signature=hinted, demos=demos, inputs=hinted_inputs
        )
        return result

    async def acall(
        self,
        lm: Any,
        lm_kwargs: dict[str, Any],
        signature: type[Signature],
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        hinted, hinted_inputs = self._with_hint(signature, inputs)
        result: list[dict[str, Any]] = await self.adapter.acall(
            lm, lm_kwargs=lm_kwargs, signature=hinted, demos=demos, inputs=hinted_inputs
        )
        return result


def describe_modules(program: Module) -> str:
    """Each predictor's inputs, outputs and instructions, for the feedback prompt."""
    separator = "-" * 80
    parts = [separator]
    for name, predictor in program.named_predictors():
        signature = predictor.signature
        instructions = textwrap.dedent(signature.instructions)
        indented = "".join(f"\n\t\t{line}" for line in instructions.splitlines())
        parts.append(f"Module {name}")
        parts.append("\n\tInput Fields:" + _describe_fields(signature.input_fields))
        parts.append("\tOutput Fields:" + _describe_fields(signature.output_fields))
        parts.append(f"\tOriginal Instructions: {indented}")
        parts.append(separator)
    return "\n".join(part.strip("\n") for part in parts)


def _describe_fields(fields: dict[str, Any]) -> str:
    lines = []
    for index, (name, field) in enumerate(fields.items(), start=1):
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        desc = extra.get("desc", "")
        desc = "" if desc == f"${{{name}}}" else desc
        lines.append(
            f"\n\t\t{index}. `{name}` ({annotation_name(field.annotation)}): {desc}".rstrip()
        )
    return "".join(lines)


def _hints_by_signature(module: Module, advice: dict[str, str]) -> dict[int, str]:
    return {id(p.signature): advice.get(name, "N/A") for name, p in module.named_predictors()}


def _as_json(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=_unserialisable)


def _unserialisable(value: Any) -> str:
    if hasattr(value, "model_dump"):
        return json.dumps(value.model_dump(mode="json"))
    return f"<non-serializable: {type(value).__name__}>"


def _source_of(obj: Any) -> str:
    for candidate in (obj, type(obj)):
        try:
            return inspect.getsource(candidate)
        except (OSError, TypeError):
            continue
    return getattr(obj, "__name__", repr(obj))


def _extend_trace(steps: list[Any]) -> None:
    trace = current().trace
    if steps and trace is not None:
        trace.extend(steps)


def _chat_adapter() -> Any:
    from dspyq.adapters import ChatAdapter

    return ChatAdapter()
