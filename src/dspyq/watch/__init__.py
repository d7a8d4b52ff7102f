"""The performance watcher (``dspyq watch``): windows over SQL, alerts, canary verdicts.

- :class:`Watcher` (``look`` once, ``run`` until stopped);
- :mod:`dspyq.watch.windows`, the figures of one window per version and pool;
- :mod:`dspyq.watch.thresholds`, the seed's thresholds judged on them;
- :mod:`dspyq.watch.canary`, a canary compared with its stable version;
- :class:`LeaderLock`, so several watchers raise each alert once.

Imports the store, the deployment pipeline and Redis; never the client or Celery.
"""

from dspyq.watch.leader import LeaderLock
from dspyq.watch.watcher import (
    CANARY_ROLLBACK,
    CANARY_UNDERSAMPLED,
    PERFORMANCE_DEGRADATION,
    Watcher,
    WatchReport,
)

__all__ = [
    "CANARY_ROLLBACK",
    "CANARY_UNDERSAMPLED",
    "PERFORMANCE_DEGRADATION",
    "LeaderLock",
    "WatchReport",
    "Watcher",
]
