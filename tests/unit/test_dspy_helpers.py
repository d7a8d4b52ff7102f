"""The DSPy helper names (batch, Parallel, majority, asyncify, syncify, track_usage,
callbacks, DummyLM, the evaluate/teleprompt/utils submodules), each run on DSPy 3.4.1
and on dspyq with the same scripted LM, comparing what a user observes."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import dspy
import pytest

import dspyq
from dspyq.core.context import reset_configuration


@pytest.fixture(autouse=True)
def _clean_configuration() -> Any:
    reset_configuration()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    dspy.configure(lm=None, callbacks=[], track_usage=False)
    yield
    dspy.configure(lm=None, callbacks=[], track_usage=False)
    reset_configuration()


def _both(run: Any) -> tuple[Any, Any]:
    """``run(pkg)`` on DSPy then on dspyq."""
    return run(dspy), run(dspyq)


def _answers(count: int) -> list[dict[str, str]]:
    return [{"answer": f"a{i}"} for i in range(count)]


def test_batch_returns_results_in_order() -> None:
    def run(pkg: Any) -> Any:
        examples = [pkg.Example(question=f"q{i}").with_inputs("question") for i in range(5)]
        with pkg.context(lm=pkg.utils.DummyLM(_answers(5))):
            results = pkg.Predict("question -> answer").batch(examples, num_threads=1)
        return [dict(result) for result in results]

    theirs, ours = _both(run)
    assert ours == theirs == [{"answer": f"a{i}"} for i in range(5)]


class _Flaky:
    """A module failing on the inputs named in ``bad``."""

    def __init__(self, pkg: Any, bad: set[str]) -> None:
        self.module = type(
            "Flaky",
            (pkg.Module,),
            {"forward": lambda _self, question: _fail_or_echo(pkg, question, bad)},
        )()


def _fail_or_echo(pkg: Any, question: str, bad: set[str]) -> Any:
    if question in bad:
        raise ValueError(f"bad {question}")
    return pkg.Prediction(answer=question.upper())


def test_batch_return_failed_examples_shapes() -> None:
    def run(pkg: Any) -> Any:
        examples = [pkg.Example(question=f"q{i}").with_inputs("question") for i in range(4)]
        module = _Flaky(pkg, {"q1", "q3"}).module
        results, failed, errors = module.batch(
            examples, num_threads=1, return_failed_examples=True, disable_progress_bar=True
        )
        return (
            [dict(r) if isinstance(r, pkg.Prediction) else repr(r) for r in results],
            [dict(example) for example in failed],
            [repr(error) for error in errors],
        )

    theirs, ours = _both(run)
    assert ours == theirs
    assert ours[2] == ["ValueError('bad q1')", "ValueError('bad q3')"]


@pytest.mark.parametrize("threads", [1, 3])
def test_batch_max_errors_cancels_like_dspy(threads: int) -> None:
    def run(pkg: Any) -> Any:
        examples = [pkg.Example(question=f"q{i}").with_inputs("question") for i in range(6)]
        module = _Flaky(pkg, {"q0", "q1", "q2"}).module
        with pytest.raises(Exception) as caught:
            module.batch(examples, num_threads=threads, max_errors=2, disable_progress_bar=True)
        return type(caught.value), str(caught.value)

    theirs, ours = _both(run)
    assert ours == theirs == (Exception, "Execution cancelled due to errors or interruption.")


def test_parallel_accepts_dicts_and_tuples_and_refuses_other_types() -> None:
    def run(pkg: Any) -> Any:
        echo = type("Echo", (pkg.Module,), {"forward": lambda _s, x, y=0: (x, y)})()
        parallel = pkg.Parallel(num_threads=2, disable_progress_bar=True)
        results = parallel([(echo, {"x": 1}), (echo, (2, 3)), (echo, "bad")])
        return results[:2], type(results[2]), str(results[2])

    theirs, ours = _both(run)
    assert ours == theirs


def test_majority_picks_the_most_common_normalized_answer() -> None:
    def run(pkg: Any) -> Any:
        completions = [{"answer": "Paris."}, {"answer": "London"}, {"answer": "paris"}]
        chosen = pkg.majority(pkg.Prediction.from_completions(completions))
        tie = pkg.majority([{"answer": "b"}, {"answer": "a"}])
        return dict(chosen), dict(tie)

    theirs, ours = _both(run)
    assert ours == theirs == ({"answer": "Paris."}, {"answer": "b"})


def test_asyncify_runs_the_program_with_the_callers_configuration() -> None:
    def run(pkg: Any) -> Any:
        program = pkg.asyncify(pkg.Predict("question -> answer"))

        async def main() -> Any:
            with pkg.context(lm=pkg.utils.DummyLM(_answers(2))):
                return await asyncio.gather(program(question="x"), program(question="y"))

        return sorted(prediction.answer for prediction in asyncio.run(main()))

    theirs, ours = _both(run)
    assert ours == theirs == ["a0", "a1"]


def test_syncify_in_place_and_wrapped() -> None:
    def run(pkg: Any) -> Any:
        class Async(pkg.Module):
            async def aforward(self, question: str) -> Any:
                return pkg.Prediction(answer=question * 2)

        in_place = pkg.syncify(Async())
        wrapped = pkg.syncify(Async(), in_place=False)
        return in_place(question="ab").answer, wrapped(question="c").answer

    theirs, ours = _both(run)
    assert ours == theirs == ("abab", "cc")


def test_track_usage_gives_usage_per_lm() -> None:
    def run(pkg: Any) -> Any:
        with pkg.context(lm=pkg.utils.DummyLM(_answers(3))):
            predict = pkg.Predict("question -> answer")
            with pkg.track_usage() as outer:
                predict(question="1")
                with pkg.track_usage() as inner:
                    predict(question="2")
            with pkg.context(track_usage=True):
                per_call = predict(question="3").get_lm_usage()
        return outer.get_total_tokens(), dict(inner.usage_data), per_call

    theirs, ours = _both(run)
    assert ours == theirs
    assert ours[0]["dummy"]["total_tokens"] == 0


def test_callbacks_see_module_lm_and_adapter_calls() -> None:
    def run(pkg: Any) -> Any:
        seen: list[Any] = []

        class Recorder(pkg.utils.BaseCallback):
            def on_module_start(self, call_id: str, instance: Any, inputs: Any) -> None:
                seen.append(("module_start", type(instance).__name__, inputs))

            def on_module_end(self, call_id: str, outputs: Any, exception: Any = None) -> None:
                seen.append(("module_end", dict(outputs), exception))

            def on_lm_start(self, call_id: str, instance: Any, inputs: Any) -> None:
                seen.append(("lm_start", sorted(inputs)))

            def on_lm_end(self, call_id: str, outputs: Any, exception: Any = None) -> None:
                seen.append(("lm_end", outputs))

            def on_adapter_format_start(self, call_id: str, instance: Any, inputs: Any) -> None:
                seen.append(("format_start", sorted(inputs)))

            def on_adapter_parse_end(self, call_id: str, outputs: Any, exception: Any = None):
                seen.append(("parse_end", outputs))

        lm = pkg.utils.DummyLM([{"reasoning": "r", "answer": "x"}])
        with pkg.context(lm=lm, callbacks=[Recorder()]):
            pkg.ChainOfThought("question -> answer")(question="q")
        return seen

    theirs, ours = _both(run)
    assert ours == theirs
    assert [event[0] for event in ours][:2] == ["module_start", "module_start"]


def test_a_failing_callback_does_not_change_the_call() -> None:
    def run(pkg: Any) -> Any:
        class Broken(pkg.utils.BaseCallback):
            def on_module_start(self, call_id: str, instance: Any, inputs: Any) -> None:
                raise RuntimeError("boom")

        with pkg.context(lm=pkg.utils.DummyLM(_answers(1)), callbacks=[Broken()]):
            return pkg.Predict("question -> answer")(question="q").answer

    theirs, ours = _both(run)
    assert ours == theirs == "a0"


@pytest.mark.parametrize("adapter", ["ChatAdapter", "JSONAdapter"])
def test_dummy_lm_modes(adapter: str) -> None:
    def run(pkg: Any) -> Any:
        chosen = getattr(pkg, adapter)()
        keyed = pkg.utils.DummyLM({"sky": {"answer": "blue"}}, adapter=chosen)
        listed = pkg.utils.DummyLM([{"answer": "one", "n": 2}], adapter=chosen)
        return (
            keyed(messages=[{"role": "user", "content": "the sky"}]),
            keyed(messages=[{"role": "user", "content": "grass"}]),
            listed(messages=[{"role": "user", "content": "x"}]),
            listed(messages=[{"role": "user", "content": "x"}]),
        )

    theirs, ours = _both(run)
    assert ours == theirs


def test_dummy_lm_follow_examples() -> None:
    def run(pkg: Any) -> Any:
        lm = pkg.utils.DummyLM([{"answer": "unused"}], follow_examples=True)
        demo = pkg.Example(question="What color is the sky?", answer="blue")
        with pkg.context(lm=lm):
            predict = pkg.Predict("question -> answer")
            return predict(question="What color is the sky?", demos=[demo]).answer

    theirs, ours = _both(run)
    assert ours == theirs == "blue"


def test_submodule_names_port_by_renaming_the_package() -> None:
    from dspy.evaluate import __all__ as evaluate_names

    import dspyq.evaluate
    import dspyq.teleprompt
    import dspyq.utils

    assert set(evaluate_names) <= set(dspyq.evaluate.__all__)
    names = ("BootstrapFewShot", "LabeledFewShot", "COPRO", "MIPROv2", "Teleprompter")
    ported = ("InferRules", "BootstrapFewShotWithOptuna", "BootstrapFinetune", "BetterTogether")
    for name in (*names, *ported, "SIMBA", "GEPA"):
        assert getattr(dspyq.teleprompt, name) is getattr(dspyq, name)
    assert dspyq.BootstrapRS is dspyq.BootstrapFewShotWithRandomSearch
    for name in ("DummyLM", "BaseCallback", "with_callbacks"):
        assert hasattr(dspyq.utils, name)


@pytest.mark.parametrize(
    ("prediction", "answers"), [("The Paris", ["paris", "x"]), ("a", ["b"]), ("x", "x")]
)
def test_em_matches_dspy(prediction: str, answers: Any) -> None:
    def run(pkg: Any) -> Any:
        try:
            return pkg.evaluate.EM(prediction, answers)
        except ValueError as exc:
            return str(exc)

    theirs, ours = _both(run)
    assert ours == theirs


def test_semantic_f1_sends_dspys_prompt_and_scores_alike() -> None:
    def run(pkg: Any) -> Any:
        lm = pkg.utils.DummyLM([{"reasoning": "r", "recall": "0.5", "precision": "1.0"}] * 2)
        example = pkg.Example(question="q", response="gold")
        with pkg.context(lm=lm):
            metric = pkg.evaluate.SemanticF1()
            scored = metric(example, pkg.Prediction(response="mine"))
            passed = metric(example, pkg.Prediction(response="mine"), trace=[])
        return scored.score, passed.score, lm.history[0]["messages"]

    theirs, ours = _both(run)
    assert ours == theirs


def test_settings_configure_and_attributes_alias_the_runtime_configuration() -> None:
    def run(pkg: Any) -> Any:
        lm = pkg.utils.DummyLM(_answers(1))
        pkg.settings.configure(lm=lm)
        try:
            seen = pkg.settings.lm is lm
            with pkg.settings.context(lm=None):
                inner = pkg.settings.lm
            answer = pkg.Predict("question -> answer")(question="q").answer
            return seen, inner, answer, pkg.settings.num_threads, pkg.settings.max_errors
        finally:
            pkg.settings.configure(lm=None)

    theirs, ours = _both(run)
    assert ours == theirs == (True, None, "a0", 8, 10)
    assert dspyq.settings.get_settings() is not None  # the deployment settings stay


def _program(pkg: Any) -> Any:
    predict = pkg.Predict("question -> answer")
    predict.demos = [pkg.Example(question="q0", answer="a0")]
    return predict


def test_pickled_state_needs_allow_pickle(tmp_path: Any) -> None:
    def run(pkg: Any) -> Any:
        path = tmp_path / f"{pkg.__name__}.pkl"
        _program(pkg).save(str(path))
        fresh = pkg.Predict("question -> answer")
        with pytest.raises(ValueError) as refused:
            fresh.load(str(path))
        fresh.load(str(path), allow_pickle=True)
        return str(refused.value), [dict(demo) for demo in fresh.demos]

    theirs, ours = _both(run)
    assert ours == theirs


def test_save_program_and_load(tmp_path: Any) -> None:
    def run(pkg: Any) -> Any:
        directory = tmp_path / pkg.__name__
        _program(pkg).save(str(directory), save_program=True)
        with pytest.raises(ValueError) as refused:
            pkg.load(str(directory))
        loaded = pkg.load(str(directory), allow_pickle=True)
        with pytest.raises(ValueError) as suffixed:
            _program(pkg).save(str(tmp_path / "x.json"), save_program=True)
        return (
            sorted(p.name for p in directory.iterdir()),
            str(refused.value),
            type(loaded).__name__,
            [dict(demo) for demo in loaded.demos],
            str(suffixed.value),
        )

    theirs, ours = _both(run)
    assert ours == theirs


def test_configure_cache_off_repeats_no_answer_from_cache() -> None:
    from dspyq.lm.cache import set_default_cache

    try:
        dspyq.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
        from dspyq.lm.cache import default_cache

        assert default_cache().get("anything") is None
        dspyq.configure_cache(enable_disk_cache=False, memory_max_entries=5)
        assert default_cache().max_entries == 5  # type: ignore[attr-defined]
    finally:
        set_default_cache(None)


def test_disable_logging_silences_dspyq_records(caplog: Any) -> None:
    import logging

    try:
        dspyq.disable_logging()
        logging.getLogger("dspyq.core.parallel").error("hidden")
        dspyq.enable_logging()
        logging.getLogger("dspyq.core.parallel").error("shown")
    finally:
        dspyq.enable_logging()
    assert [r.getMessage() for r in caplog.records] == ["shown"]


def test_streamify_ends_with_the_prediction() -> None:
    def run(pkg: Any) -> Any:
        program = pkg.streamify(pkg.Predict("question -> answer"))

        async def main() -> Any:
            with pkg.context(lm=pkg.utils.DummyLM(_answers(1))):
                return [item async for item in program(question="q")]

        items = asyncio.run(main())
        return dict(items[-1]), type(items[-1]).__name__

    theirs, ours = _both(run)
    assert ours == theirs == ({"answer": "a0"}, "Prediction")


def test_streamify_sync_generator_yields_chunks_then_result() -> None:
    program = dspyq.streamify(dspyq.Predict("question -> answer"), async_streaming=False)
    with dspyq.context(lm=dspyq.utils.DummyLM(_answers(1))):
        items = list(program(question="q"))
    assert "".join(item.chunk for item in items[:-1]) == "[[ ## answer ## ]]\na0"
    assert items[-1].answer == "a0"


def test_callbacks_see_evaluate_and_compile() -> None:
    def run(pkg: Any) -> Any:
        seen: list[str] = []

        class Recorder(pkg.utils.BaseCallback):
            def on_evaluate_start(self, call_id: str, instance: Any, inputs: Any) -> None:
                seen.append("evaluate_start")

            def on_evaluate_end(self, call_id: str, outputs: Any, exception: Any = None):
                seen.append(f"evaluate_end {outputs.score}")

            def on_compile_start(self, call_id: str, instance: Any, inputs: Any) -> None:
                seen.append(f"compile_start {type(instance).__name__}")

            def on_compile_end(self, call_id: str, outputs: Any, exception: Any = None):
                seen.append(f"compile_end {len(outputs.demos)}")

        devset = [pkg.Example(question="q", answer="a0").with_inputs("question")]
        with pkg.context(lm=pkg.utils.DummyLM(_answers(1)), callbacks=[Recorder()]):
            pkg.Evaluate(devset=devset, metric=pkg.evaluate.answer_exact_match)(
                pkg.Predict("question -> answer")
            )
            pkg.LabeledFewShot(k=1).compile(pkg.Predict("question -> answer"), trainset=devset)
        return seen

    theirs, ours = _both(run)
    assert ours == theirs


def test_track_usage_over_http_counts_what_the_provider_reported(fake_lm: Any) -> None:
    fake_lm.answer_fields({"answer": "Paris"})

    def run(pkg: Any) -> Any:
        lm = pkg.LM(
            "openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="sk-test", cache=False
        )
        with pkg.context(lm=lm), pkg.track_usage() as usage:
            pkg.Predict("question -> answer")(question="capital of France?")
            pkg.Predict("question -> answer")(question="capital of Spain?")
        return usage.get_total_tokens(), {k: len(v) for k, v in usage.usage_data.items()}

    theirs, ours = _both(run)
    assert ours == theirs
    assert ours[0]["openai/gpt-4o-mini"]["total_tokens"] > 0
