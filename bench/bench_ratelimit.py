"""Rate-limit precision: several workers share one provider limit; is it ever exceeded?

``--workers`` worker processes consume the ``openai`` pool with its rate limit set to
``--rate`` requests per second (``DSPYQ_PROVIDERS__OPENAI__RATE_LIMIT``); a batch of
``--jobs`` jobs is sent at once. Two independent logs are checked, each over every
sliding window of one second (each window starting at a logged instant):

- the limiter's grants: the members of its Redis sorted set, scored by Redis time at
  the grant, read every 0.2 s during the run (a grant stays in the set for a period);
- the fake LM's request log: arrival time of every completion request.

A window holding more than ``--rate`` grants is a violation of the limiter. The arrival
log sees the grants shifted by each request's own trip to the server (a millisecond or
so, not the same for all), so it is also reported with that slack.

    python bench/bench_ratelimit.py --workers 3 --rate 20 --jobs 300
"""

from __future__ import annotations

import argparse
import bisect
import threading
import time
from collections.abc import Sequence

import redis
from harness import CpuMeter, Report, deployment, dspyq_sender, percentile, progress, run_batch

from dspyq.resilience.ratelimit import RateLimiter
from dspyq.testing.cluster import REDIS_URL


def max_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """The most instants in any half-open window ``[t, t + window)``.

    Checking windows that start at each instant suffices: any window can slide right
    to its first instant without losing one.
    """
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        best = max(best, bisect.bisect_left(ordered, start + window) - i)
    return best


def violations(times: Sequence[float], limit: int, window: float = 1.0) -> int:
    """How many windows ``[t, t + window)``, t a logged instant, hold more than ``limit``."""
    ordered = sorted(times)
    return sum(
        1
        for i, start in enumerate(ordered)
        if bisect.bisect_left(ordered, start + window) - i > limit
    )


class GrantLog:
    """Collects the limiter's grants (Redis time, seconds) while a run goes on."""

    def __init__(self, client: redis.Redis, key: str, every: float = 0.2) -> None:
        self.client = client
        self.key = key
        self.every = every
        self.grants: dict[bytes, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._read()
            self._stop.wait(self.every)

    def _read(self) -> None:
        entries: list[tuple[bytes, float]] = self.client.zrange(  # type: ignore[assignment]
            self.key, 0, -1, withscores=True
        )
        for member, score in entries:
            self.grants[member] = float(score) / 1_000_000

    def __enter__(self) -> GrantLog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=int, default=20, help="requests per second")
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.05, help="fake LM seconds per call")
    parser.add_argument("--exec-pool", default="threads")
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    args = parser.parse_args()

    report = Report(
        f"rate limit {args.rate}/s shared by {args.workers} workers (c={args.concurrency})"
    )
    started = time.monotonic()
    env = {"DSPYQ_PROVIDERS__OPENAI__RATE_LIMIT": f"{args.rate}/s"}
    with deployment(args.db, latency=args.latency, **env) as (cluster, fake, _tmp):
        cluster.start_workers(args.workers, args.concurrency, args.exec_pool)
        client = redis.Redis.from_url(REDIS_URL)
        key = RateLimiter(client, "openai", rate=f"{args.rate}/s", key_prefix=cluster.prefix)
        send = dspyq_sender(cluster)
        progress(f"{args.jobs} jobs at {args.rate}/s (ideal {args.jobs / args.rate:.0f} s)")
        meter = CpuMeter(cluster)
        meter.start()
        with GrantLog(client, key.requests_key) as grants:
            batch = run_batch(cluster.client.app, send, args.jobs, timeout=240)
            cluster.keep_logs |= batch.failures() > 0
        meter.stop()
        arrivals = [entry["time"] for entry in fake.requests]
        client.close()

    granted = sorted(grants.grants.values())
    # Pairing the i-th arrival with the i-th grant approximates each request's trip from
    # its grant to the server (exact while requests do not overtake one another).
    trips = sorted(a - g for a, g in zip(sorted(arrivals), granted, strict=False))
    span = granted[-1] - granted[0] if len(granted) > 1 else float("nan")
    arrival_span = max(arrivals) - min(arrivals) if len(arrivals) > 1 else float("nan")
    report.add(
        jobs=args.jobs,
        failed=batch.failures(),
        lm_requests=len(arrivals),
        grants_logged=len(granted),
        wall_s=round(batch.wall, 2),
        achieved_grant_rate=round((len(granted) - 1) / span, 2),
        achieved_arrival_rate=round((len(arrivals) - 1) / arrival_span, 2),
        max_grants_in_1s=max_in_window(granted),
        max_arrivals_in_1s=max_in_window(arrivals),
        max_arrivals_in_0_9s=max_in_window(arrivals, 0.9),
        grant_violations=violations(granted, args.rate),
        arrival_violations=violations(arrivals, args.rate),
        grant_to_arrival_ms={
            "p50": round(1000 * percentile(trips, 0.5), 1),
            "p99": round(1000 * percentile(trips, 0.99), 1),
            "max": round(1000 * trips[-1], 1) if trips else None,
        },
        cpu_ms_per_job=meter.per_job_ms(args.jobs),
    )
    report.print(
        {
            "limit": f"{args.rate}/s",
            "target": "zero windows of 1 s holding more than the limit",
            "met by the limiter's grants": violations(granted, args.rate) == 0,
            "met at the provider (arrivals)": violations(arrivals, args.rate) == 0,
            "elapsed_s": round(time.monotonic() - started, 1),
        }
    )


if __name__ == "__main__":
    main()
