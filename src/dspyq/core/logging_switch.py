"""``enable_logging`` / ``disable_logging``: silence dspyq's own log records, as DSPy's.

Disabling raises the ``dspyq`` logger's level above CRITICAL, so every ``dspyq.*``
logger without a level of its own drops its records; enabling restores the level it
had before. Handlers and other libraries' loggers are left alone.
"""

from __future__ import annotations

import logging
import threading

__all__ = ["disable_logging", "enable_logging"]

_ROOT = "dspyq"
_SILENT = logging.CRITICAL + 1
_lock = threading.Lock()
_saved_level: int | None = None


def disable_logging() -> None:
    """Drop every subsequent ``dspyq`` log record."""
    global _saved_level
    with _lock:
        logger = logging.getLogger(_ROOT)
        if _saved_level is None:
            _saved_level = logger.level
        logger.setLevel(_SILENT)


def enable_logging() -> None:
    """Undo :func:`disable_logging`."""
    global _saved_level
    with _lock:
        if _saved_level is not None:
            logging.getLogger(_ROOT).setLevel(_saved_level)
            _saved_level = None
