"""CPU of one process's own paths, without workers: a Predict call, a submit, a map.

What a change on one side of the queue moves, measured without the noise of a whole
deployment:

- ``predict``: ``Predict("question -> answer")`` calls with distinct questions against
  the fake LM (its own process, latency 0), LM cache off, through the HTTP client a
  worker's job thread uses: the adapter, the LM and HTTP;
- ``submit`` and ``map1``: a client enqueueing one job (``client.submit`` and
  ``client.map`` of one inputs dict) on Redis under a key prefix of its own, with no
  worker to take them (the keys are deleted afterwards).

Each reports the process's CPU per call. With ``--compare-src`` the same measurement
runs in turns with another ``src`` tree first on ``PYTHONPATH`` (an earlier commit's,
e.g. from ``git worktree add``):

    python bench/bench_in_process.py --what predict --rounds 5 --compare-src ../old/src
    python bench/bench_in_process.py --what map1 --rounds 5 --compare-src ../old/src
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
from collections.abc import Callable
from pathlib import Path

import redis
from harness import FakeLMProcess, Report

import dspyq
from dspyq.lm import LM
from dspyq.settings import Settings
from dspyq.tasks.resources import HTTP_TIMEOUT, ThreadHTTPClients

REDIS_URL = os.environ.get("DSPYQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WHAT = ("predict", "submit", "map1")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(what: str, api_base: str, calls: int, warmup: int) -> float:
    """Microseconds of this process's CPU per call of ``what``."""
    program = dspyq.Predict("question -> answer")
    if what == "predict":
        lm = LM(
            "openai/gpt-4o-mini",
            api_base=api_base,
            api_key="sk-bench",
            cache=False,
            num_retries=0,
            http_client=ThreadHTTPClients(HTTP_TIMEOUT).get(),
        )
        with dspyq.context(lm=lm):
            return _cpu_per_call(lambda: program(question=uuid.uuid4().hex), calls, warmup)
    prefix = f"dspyq-bench-{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="dspyq-bench-") as tmp:
        client = dspyq.Client(
            Settings(broker_url=REDIS_URL, key_prefix=prefix, database_url=f"sqlite:///{tmp}/b.db")
        )

        def send() -> object:
            question = uuid.uuid4().hex
            if what == "submit":
                return client.submit(program, lm="openai/m", question=question)
            return client.map(program, [{"question": question}], lm="openai/m")

        try:
            return _cpu_per_call(send, calls, warmup)
        finally:
            client.close()
            server = redis.Redis.from_url(REDIS_URL)
            keys = list(server.scan_iter(f"{prefix}*", count=1000))
            if keys:
                server.delete(*keys)


def _cpu_per_call(call: Callable[[], object], calls: int, warmup: int) -> float:
    for _ in range(warmup):
        call()
    start = _cpu()
    for _ in range(calls):
        call()
    return (_cpu() - start) / calls * 1e6


def _child(what: str, api_base: str, calls: int, warmup: int, src: str | None) -> float:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(src).resolve()), env.get("PYTHONPATH", "")])
    argv = [sys.executable, __file__, "--child", api_base, "--what", what, "--calls", str(calls)]
    argv += ["--warmup", str(warmup)]
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True, timeout=600)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--what", choices=WHAT, default="predict")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compare-src", help="another src tree to measure in turns")
    parser.add_argument("--child", metavar="API_BASE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(round(measure(args.what, args.child, args.calls, args.warmup), 1))
        return
    if args.calls < 1 or args.rounds < 1:
        parser.error("--calls and --rounds must be at least 1")
    variants: dict[str, str | None] = {"this tree": None}
    if args.compare_src:
        if not (Path(args.compare_src) / "dspyq").is_dir():
            parser.error(f"{args.compare_src} holds no dspyq package")
        variants = {"compared": args.compare_src, "this tree": None}
    results: dict[str, list[float]] = {name: [] for name in variants}
    report = Report(f"CPU per call in one process, no workers ({args.what})")
    with tempfile.TemporaryDirectory(prefix="dspyq-bench-") as tmp:
        fake = FakeLMProcess(Path(tmp)).start()
        try:
            for _ in range(args.rounds):
                for name, src in variants.items():
                    results[name].append(
                        _child(args.what, fake.openai_base, args.calls, args.warmup, src)
                    )
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
