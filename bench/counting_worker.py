"""``python -m dspyq worker`` that counts the Python calls it makes, for ``count_calls.py``.

Every thread's calls are counted by function while counting is on; SIGUSR2 turns it on
(clearing the counts) and, sent again, off, writing the counts as JSON to the file named
by ``DSPYQ_CALL_COUNTS``. A call counter is slow, but its figures do not depend on the
machine's load, so two versions of the code can be compared call for call.
"""

import json
import os
import signal
import sys
import threading
from collections import Counter
from types import FrameType
from typing import Any

_counts: Counter[str] = Counter()
_on = False


def _count(frame: FrameType, event: str, _arg: Any) -> None:
    if _on and event == "call":
        code = frame.f_code
        _counts[f"{code.co_filename}:{code.co_firstlineno}:{code.co_name}"] += 1


def _toggle(_signum: int, _frame: Any) -> None:
    global _on
    if not _on:
        _counts.clear()
        _on = True
        return
    _on = False
    with open(os.environ["DSPYQ_CALL_COUNTS"], "w") as out:
        json.dump(dict(_counts), out)


sys.setprofile(_count)
threading.setprofile(_count)
signal.signal(signal.SIGUSR2, _toggle)

from dspyq.cli import app  # noqa: E402 - counted from the first import on

if __name__ == "__main__":
    app(prog_name="dspyq", args=sys.argv[1:])
