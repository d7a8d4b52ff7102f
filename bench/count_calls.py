"""Python calls per job a dspyq worker makes, by package: a load-independent cost figure.

One worker (``bench/counting_worker.py``, threads, ``--concurrency``) runs a batch of
``Predict`` jobs on the fake LM while every call it makes is counted; the script prints
calls per job by package (dspyq by module) and can save them (``--save``) or compare two
saved runs (``--compare OLD NEW``), e.g. two checkouts of the code, call for call.

    python bench/count_calls.py --jobs 1000 --save /tmp/calls-new.json
    python bench/count_calls.py --compare /tmp/calls-old.json /tmp/calls-new.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from harness import deployment, dspyq_sender, progress, run_batch

_SITE = re.compile(r"site-packages/([^/]+)")
_DSPYQ = re.compile(r"/dspyq/([^:]+\.py)")


def package_of(location: str) -> str:
    """``httpx``, ``dspyq/tasks/batch.py`` or ``stdlib:contextlib.py`` for a counted function."""
    if match := _DSPYQ.search(location):
        return f"dspyq/{match.group(1)}"
    if match := _SITE.search(location):
        return match.group(1)
    return "stdlib:" + Path(location.rsplit(":", 2)[0]).name


def per_job(counts: dict[str, int], jobs: int) -> dict[str, float]:
    by_package: Counter[str] = Counter()
    for location, calls in counts.items():
        by_package[package_of(location)] += calls
    return {package: round(calls / jobs, 1) for package, calls in by_package.most_common()}


def measure(jobs: int, concurrency: int) -> dict[str, float]:
    with deployment("sqlite") as (cluster, _fake, tmp):
        out = Path(tmp) / "calls.json"
        argv = [sys.executable, "bench/counting_worker.py", "worker", "--pool", "openai"]
        argv += ["--concurrency", str(concurrency), "--exec-pool", "threads"]
        argv += ["--hostname", "counting@%h", "--loglevel", "warning"]
        worker = cluster.start_command("counting", argv, DSPYQ_CALL_COUNTS=str(out))
        send = dspyq_sender(cluster)
        run_batch(cluster.client.app, send, 200, timeout=120)  # warm-up, not counted
        os.kill(worker.pid, signal.SIGUSR2)
        time.sleep(0.5)
        progress(f"{jobs} counted jobs")
        run_batch(cluster.client.app, send, jobs, timeout=600)
        time.sleep(1.0)  # background writers finish the batch's records
        os.kill(worker.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        return per_job(json.loads(out.read_text()), jobs)


def compare(old: dict[str, float], new: dict[str, float], top: int) -> None:
    print(f"calls per job: {sum(old.values()):.0f} -> {sum(new.values()):.0f}")
    keys = sorted(set(old) | set(new), key=lambda k: -abs(new.get(k, 0) - old.get(k, 0)))
    for key in keys[:top]:
        before, after = old.get(key, 0.0), new.get(key, 0.0)
        print(f"  {before:8.1f} {after:8.1f} {after - before:+8.1f}  {key}")


def _saved(parser: argparse.ArgumentParser, path: Path) -> dict[str, float]:
    """Counts written by ``--save``; a clear error for a missing or foreign file."""
    try:
        counts = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read saved counts from {path}: {exc}")
    if not isinstance(counts, dict) or not all(isinstance(v, int | float) for v in counts.values()):
        parser.error(f"{path} does not hold counts written by --save")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--save", type=Path, help="write the per-job counts here (JSON)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"))
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    if args.compare:
        old, new = (_saved(parser, path) for path in args.compare)
        compare(old, new, args.top)
        return
    counts = measure(args.jobs, args.concurrency)
    print(f"calls per job: {sum(counts.values()):.0f}")
    for package, calls in list(counts.items())[: args.top]:
        print(f"  {calls:8.1f}  {package}")
    if args.save:
        args.save.write_text(json.dumps(counts, indent=1))


if __name__ == "__main__":
    main()
