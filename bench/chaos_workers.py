"""Worker death at scale: a batch of jobs on 3 workers while workers are SIGKILLed at
random and restarted. Passes when every job finished with its own answer, the store
holds exactly one succeeded execution row and one completion event per job, and no
job recorded an error.

    python bench/chaos_workers.py --jobs 1000 --workers 3 --database sqlite

A short broker visibility timeout (``--visibility-timeout``, seconds) makes Redis hand a
dead worker's unacknowledged jobs to the others quickly. Exits non-zero on any problem.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from harness import bench_database, command_line

from dspyq.testing import FakeLMServer
from dspyq.testing.chaos import run_worker_chaos
from dspyq.testing.cluster import Cluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.3, help="fake LM seconds per call")
    parser.add_argument("--visibility-timeout", type=int, default=5)
    parser.add_argument("--kill-every", type=float, nargs=2, default=(1.0, 3.0), metavar="S")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    tmp_path = Path(tempfile.mkdtemp(prefix="dspyq-chaos-"))
    server = FakeLMServer(latency=args.latency).start()
    try:
        with bench_database(args.database, tmp_path) as url:
            cluster = Cluster(
                tmp_path,
                server,
                url,
                DSPYQ_BROKER_VISIBILITY_TIMEOUT=str(args.visibility_timeout),
            )
            cluster.settings.broker_visibility_timeout = args.visibility_timeout
            try:
                report = run_worker_chaos(
                    cluster,
                    args.jobs,
                    workers=args.workers,
                    concurrency=args.concurrency,
                    kill_every=tuple(args.kill_every),  # type: ignore[arg-type]
                    timeout=max(600.0, args.jobs * 2.0),
                    seed=args.seed,
                )
            finally:
                cluster.stop()
    finally:
        server.stop()
    audit = report.audit
    print(f"command: {command_line()}   (cpus: {os.cpu_count()}, load: {os.getloadavg()[0]:.1f})")
    print(f"jobs {audit.jobs}, workers {args.workers} x {args.concurrency}, db {args.database}")
    print(f"SIGKILLs: {report.kills} (every {args.kill_every[0]}-{args.kill_every[1]} s)")
    print(f"wall: {report.seconds:.1f} s ({audit.jobs / report.seconds:.1f} jobs/s)")
    print(f"results seen by the client: {audit.jobs - len(report.wrong_answers)}/{audit.jobs}")
    print(f"execution rows: {audit.rows}, succeeded: {audit.succeeded}")
    print(f"completion events: {audit.completes}")
    # Beyond kills, a message still running at the visibility timeout is handed out again.
    print(f"attempts: {audit.attempts} ({audit.redeliveries} redelivered)")
    for line in report.wrong_answers[:10] + audit.problems[:20]:
        print("PROBLEM", line)
    print("verdict:", "PASS" if report.ok else "FAIL")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
