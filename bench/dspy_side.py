"""DSPy's side of bench/bench_optimize.py: one optimizer, in one process, timed.

Runs in the benchmark's own environment with dspy installed (never a dependency of
dspyq): ``.bench-venv/bin/python bench/dspy_side.py --optimizer copro --data data.json
--api-base http://127.0.0.1:PORT/v1 --threads 4``. Prints one JSON line: the wall time
of ``compile`` (BootstrapFewShot: compile, then score the valset as a dspyq run does)
and the score. DSPy's disk cache is off so no run is answered from an earlier one; its
memory cache stays on, as dspyq's caches do within a run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import dspy
from dspy.evaluate import answer_exact_match


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--optimizer", choices=["bootstrap", "copro"], required=True)
    parser.add_argument("--data", type=Path, required=True, help="JSON: train, val, settings")
    parser.add_argument("--api-base", required=True)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    data = json.loads(args.data.read_text())
    train = [dspy.Example(**row).with_inputs("question") for row in data["train"]]
    val = [dspy.Example(**row).with_inputs("question") for row in data["val"]]
    settings = data["settings"]
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    lm = dspy.LM("openai/fake-model", api_base=args.api_base, api_key="dummy", num_retries=0)
    dspy.configure(lm=lm)
    student = dspy.Predict("question -> answer")

    started = time.perf_counter()
    if args.optimizer == "bootstrap":
        optimizer = dspy.BootstrapFewShot(metric=answer_exact_match, **settings)
        compiled = optimizer.compile(student, trainset=train)
        evaluate = dspy.Evaluate(
            devset=val, metric=answer_exact_match, num_threads=args.threads,
            display_progress=False,
        )  # fmt: skip
        score: float | None = float(evaluate(compiled).score)
    else:
        optimizer = dspy.COPRO(metric=answer_exact_match, **settings)
        compiled = optimizer.compile(
            student,
            trainset=train,
            eval_kwargs={"num_threads": args.threads, "display_progress": False},
        )
        score = None  # COPRO keeps its scores to itself unless track_stats
    wall = time.perf_counter() - started
    print(json.dumps({"wall_s": round(wall, 2), "score": score}))


if __name__ == "__main__":
    main()
