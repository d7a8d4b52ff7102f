"""Optimization runs through the queue against DSPy 3.4.1 in one process, same fake LM.

BootstrapFewShot (4 bootstrapped, 16 labelled demos) and COPRO (breadth 10, depth 3,
temperature 1.4) over 50 training examples, every LM call taking ``--latency`` seconds.
The fake model answers right for one question in ten (so bootstrapping walks most of the
trainset) and gives every proposal a new instruction (so no candidate is answered from
a cache). dspyq: ``W`` provider workers of concurrency ``C`` plus one coordinator, on a
fresh deployment per ``W``; the wall time runs from ``client.optimize`` to the run's
end. DSPy: ``bench/dspy_side.py`` in ``.bench-venv`` (``pip install dspy==3.4.1``) with
``num_threads = C``, against its own fresh fake LM. A BootstrapFewShot run also scores
its program on the 50-example valset, so the DSPy side does too.

    python bench/bench_optimize.py --workers 1,2,3 --concurrency 4 --latency 0.1
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import ROOT, CpuMeter, FakeLMProcess, Report, _post_json, deployment, progress

import dspyq
from dspyq.metrics import answer_exact_match

MODEL = "openai/bench-model"
DSPY_PYTHON = ROOT / ".bench-venv" / "bin" / "python"
BOOTSTRAP = {"max_bootstrapped_demos": 4, "max_labeled_demos": 16}
COPRO = {"breadth": 10, "depth": 3, "init_temperature": 1.4}
RIGHT_EVERY = 10


def dataset(train_size: int) -> dict[str, Any]:
    rows = [
        {"question": f"What is {i} squared?", "answer": str(i * i)}
        for i in range(1, 2 * train_size + 1)
    ]
    return {"train": rows[:train_size], "val": rows[train_size:]}


def script_fake(fake: FakeLMProcess, rows: list[dict[str, str]]) -> None:
    """Proposals: a new instruction each time; answers: right for one question in ten."""
    proposals = [
        f"[[ ## proposed_instruction ## ]]\nInstruction variant {k}: answer with the number.\n\n"
        "[[ ## proposed_prefix_for_output_field ## ]]\nAnswer:\n\n[[ ## completed ## ]]"
        for k in range(1000)
    ]
    rules: list[dict[str, Any]] = [
        {"match": r"\[\[ ## proposed_instruction ## \]\]", "answers": proposals}
    ]
    for i, row in enumerate(rows, start=1):
        if i % RIGHT_EVERY == 0:
            question = row["question"].replace("?", r"\?")
            rules.append(
                {"match": rf"{question}\n\nRespond with", "fields": {"answer": row["answer"]}}
            )
    rules.append({"match": r"squared\?\n\nRespond with", "fields": {"answer": "unknown"}})
    _post_json(f"{fake.url}/_fake/script", {"rules": rules})


def requests_served(fake: FakeLMProcess) -> int:
    return len(fake.requests)


QUESTION = re.compile(r"What is (\d+) squared\?\n\nRespond with")


def bootstrap_phases(
    fake: FakeLMProcess, since: int, started: float, ended: float, train_size: int
) -> dict[str, float]:
    """Where a BootstrapFewShot run's wall time went, from the fake LM's request log:
    bootstrapping (LM calls on trainset questions) and scoring (valset questions), as
    seconds from the run's start to each phase's first and last LM call."""
    spans: dict[str, list[float]] = {"bootstrap": [], "score": []}
    for entry in fake.requests[since:]:
        text = json.dumps(entry.get("body") or {}).replace("\\n", "\n")
        asked = QUESTION.findall(text)
        if asked:  # the last question in the prompt is the one asked (demos come first)
            phase = "bootstrap" if int(asked[-1]) <= train_size else "score"
            spans[phase].append(float(entry["time"]))
    phases: dict[str, float] = {}
    for phase, times in spans.items():
        if times:
            phases[f"{phase}_from_s"] = round(min(times) - started, 2)
            phases[f"{phase}_to_s"] = round(max(times) - started, 2)
    phases["end_s"] = round(ended - started, 2)
    return phases


def run_dspy(which: str, data_path: Path, threads: int, latency: float) -> dict[str, Any]:
    """DSPy's wall time for ``which`` against a fresh fake LM."""
    with tempfile.TemporaryDirectory(prefix="dspyq-bench-dspy-") as tmp:
        fake = FakeLMProcess(Path(tmp), latency=latency).start()
        try:
            script_fake(fake, json.loads(data_path.read_text())["all"])
            done = subprocess.run(
                [
                    str(DSPY_PYTHON), str(ROOT / "bench" / "dspy_side.py"),
                    "--optimizer", which, "--data", str(data_path),
                    "--api-base", fake.openai_base, "--threads", str(threads),
                ],
                capture_output=True, text=True, timeout=1800,
            )  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"dspy_side.py failed:\n{done.stderr[-3000:]}")
            result = dict(json.loads(done.stdout.strip().splitlines()[-1]))
            result["lm_calls"] = requests_served(fake)
            return result
        finally:
            fake.stop()


def run_dspyq(
    cluster: Any, fake: FakeLMProcess, which: str, data: dict[str, Any]
) -> dict[str, Any]:
    train = [dspyq.Example(**r).with_inputs("question") for r in data["train"]]
    val = [dspyq.Example(**r).with_inputs("question") for r in data["val"]]
    program = dspyq.Predict("question -> answer")
    before = requests_served(fake)
    meter = CpuMeter(cluster)
    meter.start()
    started = time.perf_counter()
    started_epoch = time.time()
    if which == "bootstrap":
        optimizer: Any = dspyq.BootstrapFewShot(metric=answer_exact_match, **BOOTSTRAP)
        run = cluster.client.optimize(optimizer, program, trainset=train, valset=val, lm=MODEL)
    else:
        optimizer = dspyq.COPRO(metric=answer_exact_match, **COPRO)
        run = cluster.client.optimize(optimizer, program, trainset=train, lm=MODEL)
    status = run.wait(timeout=1800)
    wall = time.perf_counter() - started
    ended_epoch = time.time()
    meter.stop()
    record = run.record()
    if status != "succeeded":
        cluster.keep_logs = True
        raise RuntimeError(f"{which} run ended {status}: {record.stop_reason}")
    return {
        "wall_s": round(wall, 2),
        "score": record.best_score,
        "lm_calls": requests_served(fake) - before,
        "iterations": record.iterations,
        # Where the 2 cores went during the run (seconds), which wall time alone hides.
        "cpu_s": meter.used,
        **(
            bootstrap_phases(fake, before, started_epoch, ended_epoch, len(data["train"]))
            if which == "bootstrap"
            else {}
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,3", help="comma-separated worker counts")
    parser.add_argument("--concurrency", type=int, default=4, help="per worker = DSPy threads")
    parser.add_argument("--latency", type=float, default=0.1, help="fake LM seconds per call")
    parser.add_argument("--train", type=int, default=50, help="training examples")
    parser.add_argument("--optimizers", default="bootstrap,copro")
    parser.add_argument("--skip-dspy", action="store_true", help="only the dspyq side")
    args = parser.parse_args()

    data = dataset(args.train)
    which_all = args.optimizers.split(",")
    report = Report(
        f"optimization runs at {args.latency * 1000:g} ms LM latency, {args.train} train "
        f"examples, concurrency {args.concurrency} = DSPy threads"
    )
    dspy_wall: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="dspyq-bench-data-") as tmp:
        data_path = Path(tmp) / "data.json"
        settings = {"bootstrap": BOOTSTRAP, "copro": COPRO}
        if not args.skip_dspy:
            for which in which_all:
                payload = {**data, "all": data["train"] + data["val"], "settings": settings[which]}
                data_path.write_text(json.dumps(payload))
                progress(f"DSPy 3.4.1 {which}, {args.concurrency} threads")
                result = run_dspy(which, data_path, args.concurrency, args.latency)
                dspy_wall[which] = result["wall_s"]
                report.add(optimizer=which, side="dspy-3.4.1", threads=args.concurrency, **result)
    for workers in (int(w) for w in args.workers.split(",")):
        with deployment("sqlite", latency=args.latency) as (cluster, fake, _tmp):
            script_fake(fake, data["train"] + data["val"])
            cluster.start_workers(workers, args.concurrency)
            cluster.start_worker("coordinator", pool="optimize", concurrency=1)
            for which in which_all:
                progress(f"dspyq {which}, {workers} x {args.concurrency}")
                result = run_dspyq(cluster, fake, which, data)
                base = dspy_wall.get(which)
                speedup = None if base is None else round(base / result["wall_s"], 2)
                report.add(
                    optimizer=which, side="dspyq", workers=workers,
                    concurrency=args.concurrency, **result, speedup_vs_dspy=speedup,
                )  # fmt: skip
    report.print()


if __name__ == "__main__":
    main()
