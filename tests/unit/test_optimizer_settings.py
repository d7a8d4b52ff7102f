"""An optimizer's constructor settings as a run captures them, and the optimizer a worker
rebuilds from them."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

import dspyq
from dspyq.core.module import Module
from dspyq.errors import InputError
from dspyq.metrics import answer_exact_match
from dspyq.optimize.teleprompter import CompileInputs, Teleprompter
from dspyq.tasks.optimization import optimizer_config
from dspyq.tasks.optimizer_settings import capture, rebuild


class Wrapping(Teleprompter):
    """A user's optimizer holding another one and an LM, as BetterTogether does."""

    def __init__(
        self, metric: Any, inner: Teleprompter, reflection_lm: Any = None, rounds: int = 2
    ) -> None:
        self.metric, self.inner = metric, inner
        self.reflection_lm, self.rounds = reflection_lm, rounds

    def _compile(self, inputs: CompileInputs, *, strict: bool = False) -> Module:
        return inputs.student.deepcopy()


class Forgetful(Teleprompter):
    def __init__(self, size: int = 3) -> None:
        self.kept_size = size


class Locked(Teleprompter):
    def __init__(self, lock: Any = None) -> None:
        self.lock = lock


def lm_of(model: str, options: dict[str, Any]) -> dspyq.LM:
    return dspyq.LM(model, api_key="worker-key", **options)


def test_nested_optimizers_and_lms_travel_as_json_and_come_back() -> None:
    inner = dspyq.BootstrapFewShot(metric=answer_exact_match, max_bootstrapped_demos=1)
    lm = dspyq.LM("openai/big", api_key="secret", temperature=0.7)
    optimizer = Wrapping(answer_exact_match, inner, reflection_lm=lm)

    settings = optimizer_config(optimizer, {"strict": True})
    text = json.dumps(settings)
    assert "secret" not in text  # the worker's own credentials are used
    assert settings["reflection_lm"]["model"] == "openai/big"
    assert settings["inner"]["class"] == "BootstrapFewShot"
    assert settings["inner"]["settings"]["metric"]["path"].endswith(":answer_exact_match")

    rebuilt = rebuild(
        f"{__name__}:Wrapping", json.loads(text), metric=answer_exact_match, make_lm=lm_of
    )
    assert isinstance(rebuilt, Wrapping) and rebuilt.rounds == 2
    assert rebuilt.reflection_lm.model == "openai/big"
    assert rebuilt.reflection_lm.kwargs["temperature"] == 0.7
    assert isinstance(rebuilt.inner, dspyq.BootstrapFewShot)
    assert rebuilt.inner.max_bootstrapped_demos == 1 and rebuilt.inner.metric is answer_exact_match


def test_a_parameter_not_kept_under_its_name_is_refused_by_name() -> None:
    with pytest.raises(InputError, match="Forgetful parameter 'size' is not kept"):
        capture(Forgetful())


def test_a_value_that_is_not_json_is_refused_by_name() -> None:
    with pytest.raises(InputError, match="Locked parameter 'lock' is a lock"):
        capture(Locked(threading.Lock()))


def test_compile_options_the_optimizer_does_not_take_are_refused() -> None:
    optimizer = Wrapping(answer_exact_match, dspyq.LabeledFewShot(k=1))
    with pytest.raises(InputError, match="unexpected keyword arguments: 'loose'"):
        optimizer_config(optimizer, {"loose": True})


def test_round_strategy_optimizers_keep_the_settings_runs_always_stored() -> None:
    copro = dspyq.COPRO(prompt_model=dspyq.LM("openai/m", api_key="k"), breadth=3, depth=1)
    assert optimizer_config(copro) == {
        "breadth": 3, "depth": 1, "init_temperature": 1.4, "track_stats": False,
    }  # fmt: skip
    search = dspyq.BootstrapFewShotWithRandomSearch(
        metric=answer_exact_match, num_candidate_programs=5
    )
    assert optimizer_config(search)["num_candidate_programs"] == 5
    assert optimizer_config(dspyq.LabeledFewShot(k=3)) == {"k": 3}
