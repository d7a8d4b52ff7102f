"""A worker whose coordinator dies (SIGKILL) right after sending one optimization round.

Run as ``python tests/integration/coordinator_crash.py worker --pool optimize ...`` with
``DSPYQ_TEST_CRASH_AFTER_ROUND=N``: once round N's chord is out, and before the
coordinator records that it is, the whole worker is killed, exactly at the point where a
dead coordinator leaves the most to its replacement.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from dspyq.cli import app
from dspyq.tasks import optimize_rounds

CRASH_AFTER_ROUND = int(os.environ["DSPYQ_TEST_CRASH_AFTER_ROUND"])
_send = optimize_rounds.send_round


def _send_then_die(run: Any, plan: Any, round_index: int, *args: Any, **kwargs: Any) -> None:
    _send(run, plan, round_index, *args, **kwargs)
    if round_index == CRASH_AFTER_ROUND:
        os.killpg(os.getpgid(0), signal.SIGKILL)


optimize_rounds.send_round = _send_then_die

if __name__ == "__main__":
    app(prog_name="dspyq")
