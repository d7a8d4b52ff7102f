"""``python -m dspyq worker`` with gevent's monkey patching done first.

Celery's own ``celery worker -P gevent`` patches the standard library before anything
else is imported; ``dspyq worker --exec-pool gevent`` does not (yet), and without the
patch every blocking call (HTTP, Redis, SQL) would stall all of the worker's greenlets.
The benchmarks start gevent workers through this file::

    python bench/gevent_worker.py worker --pool openai --exec-pool gevent --concurrency 500
"""

from gevent import monkey

monkey.patch_all()

import select  # noqa: E402 - everything after the patch
import sys  # noqa: E402

# httpcore imports trio when it is installed, and trio builds its (never used here)
# epoll loop at import: gevent's select has no epoll, so lend it the original meanwhile.
select.epoll = monkey.get_original("select", "epoll")  # type: ignore[misc]
import httpcore  # noqa: E402, F401

del select.epoll

from dspyq.cli import app  # noqa: E402

if __name__ == "__main__":
    app(prog_name="dspyq", args=sys.argv[1:])
