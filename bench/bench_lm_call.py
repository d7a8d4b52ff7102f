"""CPU of one ``Predict`` call in a process, without the queue: adapter, LM and HTTP.

The part of a job's cost that a client-side change (adapter, LM bookkeeping, the HTTP
client) moves, measured without the noise of a whole deployment: a process runs
``--calls`` ``Predict("question -> answer")`` calls with distinct questions against the
fake LM (its own process, latency 0), LM cache off, and reports its CPU per call. With
``--compare-src`` the same measurement runs in turns with another ``src`` tree first
on ``PYTHONPATH`` (an earlier commit's, e.g. from ``git worktree add``):

    python bench/bench_lm_call.py --rounds 5 --compare-src ../old/src
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from harness import FakeLMProcess, Report

import dspyq
from dspyq.lm import LM
from dspyq.tasks.environment import HTTP_TIMEOUT, ThreadHTTPClients


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(api_base: str, calls: int, warmup: int) -> float:
    """Microseconds of this process's CPU per Predict call (the worker's HTTP client)."""
    http = ThreadHTTPClients(HTTP_TIMEOUT).get()
    lm = LM(
        "openai/gpt-4o-mini",
        api_base=api_base,
        api_key="sk-bench",
        cache=False,
        num_retries=0,
        http_client=http,
    )
    program = dspyq.Predict("question -> answer")
    with dspyq.context(lm=lm):
        for n in range(warmup):
            program(question=f"warm-up {n}")
        start = _cpu()
        for _ in range(calls):
            program(question=uuid.uuid4().hex)
        return (_cpu() - start) / calls * 1e6


def _child(api_base: str, calls: int, warmup: int, src: str | None) -> float:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(src).resolve()), env.get("PYTHONPATH", "")])
    argv = [sys.executable, __file__, "--child", api_base, "--calls", str(calls)]
    argv += ["--warmup", str(warmup)]
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True, timeout=600)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compare-src", help="another src tree to measure in turns")
    parser.add_argument("--child", metavar="API_BASE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(round(measure(args.child, args.calls, args.warmup), 1))
        return
    if args.calls < 1 or args.rounds < 1:
        parser.error("--calls and --rounds must be at least 1")
    variants: dict[str, str | None] = {"this tree": None}
    if args.compare_src:
        if not (Path(args.compare_src) / "dspyq").is_dir():
            parser.error(f"{args.compare_src} holds no dspyq package")
        variants = {"compared": args.compare_src, "this tree": None}
    results: dict[str, list[float]] = {name: [] for name in variants}
    report = Report("CPU per Predict call in one process (no queue)")
    with tempfile.TemporaryDirectory(prefix="dspyq-bench-") as tmp:
        fake = FakeLMProcess(Path(tmp)).start()
        try:
            for _ in range(args.rounds):
                for name, src in variants.items():
                    results[name].append(_child(fake.openai_base, args.calls, args.warmup, src))
        finally:
            fake.stop()
    for name, values in results.items():
        report.add(
            variant=name,
            src=variants[name] or "installed",
            median_us_per_call=statistics.median(values),
            rounds_us_per_call=values,
        )
    report.print()


if __name__ == "__main__":
    main()
