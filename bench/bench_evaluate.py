"""Evaluation on the queue against DSPy 3.4.1's ``Evaluate``, on the same fake LM, in one run.

DSPy's ``Evaluate(num_threads=C)`` runs in this process (dspy is a dev dependency), its
LM pointed at the fake LM process (``--latency`` seconds per call, disk cache off); then
dspyq's ``client.evaluate`` scores the same number of examples with one worker of
``--concurrency C`` and with two such workers. Every run asks new questions, so no
answer comes from a cache on either side. ``--runs`` repeats the three in turns; the
ratios are DSPy's wall time over dspyq's, run by run, and their median.

    python bench/bench_evaluate.py --examples 200 --concurrency 16 --latency 0.1 --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import dspy
from harness import Report, deployment, progress

import dspyq
from dspyq.metrics import answer_exact_match


def _devset(n: int, tag: str) -> list[dict[str, str]]:
    return [{"question": f"{tag} question {i}?", "answer": "fake"} for i in range(n)]


def dspy_seconds(api_base: str, rows: list[dict[str, str]], threads: int) -> float:
    devset = [dspy.Example(**row).with_inputs("question") for row in rows]
    lm = dspy.LM("openai/fake-model", api_base=api_base, api_key="dummy", num_retries=0)
    evaluate = dspy.Evaluate(
        devset=devset,
        metric=dspy.evaluate.answer_exact_match,
        num_threads=threads,
        display_progress=False,
    )
    with dspy.context(lm=lm):
        started = time.perf_counter()
        evaluate(dspy.Predict("question -> answer"))
    return time.perf_counter() - started


def dspyq_seconds(client: dspyq.Client, rows: list[dict[str, str]]) -> float:
    devset = [dspyq.Example(**row).with_inputs("question") for row in rows]
    started = time.perf_counter()
    client.evaluate(
        dspyq.Predict("question -> answer"),
        devset,
        metric=answer_exact_match,
        lm="openai/fake-model",
        display_progress=False,
        timeout=300,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.1, help="fake LM seconds per call")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    report = Report(f"evaluate: {args.examples} examples, {args.latency * 1000:g} ms LM")
    ideal = args.examples * args.latency / args.concurrency
    ratios: dict[int, list[float]] = {1: [], 2: []}
    with deployment(latency=args.latency) as (cluster, fake, _tmp):
        cluster.start_worker("w0", concurrency=args.concurrency)
        dspyq_seconds(cluster.client, _devset(2 * args.concurrency, "warm-up"))
        for run in range(args.runs):
            tag = uuid.uuid4().hex[:8]
            rows = _devset(args.examples, f"d{tag}")
            anchor = dspy_seconds(fake.openai_base, rows, args.concurrency)
            row: dict[str, object] = {"run": run, "dspy_s": round(anchor, 3)}
            for workers in (1, 2):
                if workers == 2:
                    cluster.start_worker(f"w{run + 1}", concurrency=args.concurrency)
                    dspyq_seconds(cluster.client, _devset(args.concurrency, f"warm{tag}"))
                seconds = dspyq_seconds(cluster.client, _devset(args.examples, f"q{workers}{tag}"))
                row[f"dspyq_{workers}w_s"] = round(seconds, 3)
                row[f"ratio_{workers}w"] = round(anchor / seconds, 2)
                ratios[workers].append(anchor / seconds)
            cluster.stop_worker(f"w{run + 1}")
            progress(f"run {run}: {row}")
            report.add(**row)
    summary = {
        "ideal_1w_s": round(ideal, 3),
        "ideal_2w_s": round(ideal / 2, 3),
        **{
            f"ratio_{w}w median [min, max]": (
                f"{statistics.median(r):.2f} [{min(r):.2f}, {max(r):.2f}]"
            )
            for w, r in ratios.items()
        },
        "targets": ">= 1.4 (one worker), >= 2.5 (two workers)",
    }
    report.print(summary)


if __name__ == "__main__":
    main()
