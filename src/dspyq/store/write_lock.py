"""Writers of one SQLite database take turns in dspyq's own queue, not in SQLite's.

SQLite lets one writer at a time. A writer that finds the database locked waits in
SQLite's busy handler, which sleeps 1, 2, 5, 10, 25 ms... (up to 100 ms) between tries,
however soon the lock is freed: with several worker processes on one database (``dspyq
dev``'s pools, or a machine running a few workers) waits of 10-100 ms were common while
transactions held the lock for about one. So the writers of a database queue first:

- the threads of a process on a Python lock, which wakes the next one as soon as the
  last one is done;
- the processes on an exclusive ``flock`` of a file beside the database
  (``<database>-dspyq.lock``), asked for again every fraction of a millisecond. A
  process that dies gives its lock up with its file descriptors.

The file lock is only a queue in front of SQLite's own lock, never a replacement: if it
cannot be had within the engine's busy timeout (a writer stopped while holding it), or
the file cannot be opened, the writer goes on to SQLite's lock as before. Where
``fcntl`` does not exist (Windows) only the threads queue.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["WriteLock", "lock_file_of", "write_lock_for"]

logger = logging.getLogger(__name__)

LOCK_SUFFIX = "-dspyq.lock"

_FIRST_PAUSE_S = 0.0001
_LONGEST_PAUSE_S = 0.001


def lock_file_of(database: str) -> str:
    """The file whose lock orders the writing processes of ``database`` (a path)."""
    return database + LOCK_SUFFIX


class WriteLock:
    """Reentrant per thread; the outermost hold also holds the file lock (if any)."""

    def __init__(self, lock_file: str | None, timeout: float) -> None:
        self.lock_file = lock_file if fcntl is not None else None
        self.timeout = timeout
        self._threads = threading.RLock()
        self._depth = 0  # changed only by the thread holding ``_threads``
        self._fd: int | None = None

    def __enter__(self) -> WriteLock:
        self._threads.acquire()
        self._depth += 1
        if self._depth == 1 and self.lock_file is not None:
            try:
                self._fd = self._lock_file()
            except BaseException:
                self._depth -= 1
                self._threads.release()
                raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor releases its lock
        self._threads.release()

    def _lock_file(self) -> int | None:
        """A descriptor holding the file lock, or None (go on to SQLite's lock)."""
        assert self.lock_file is not None and fcntl is not None
        try:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            logger.debug("no write queue for %s: %s", self.lock_file, exc)
            return None
        try:
            if self._wait_for(fd):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        logger.warning(
            "another process held %s for over %.1f s; writing without waiting for it",
            self.lock_file,
            self.timeout,
        )
        return None

    def _wait_for(self, fd: int) -> bool:
        assert fcntl is not None
        deadline = time.monotonic() + self.timeout
        pause = _FIRST_PAUSE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE_S)


_locks: dict[str, WriteLock] = {}
_locks_guard = threading.Lock()


def write_lock_for(database: str, timeout: float) -> WriteLock:
    """The lock of the SQLite file ``database`` (its absolute path) in this process,
    shared by every engine on that file; ``timeout`` is the first engine's."""
    with _locks_guard:
        lock = _locks.get(database)
        if lock is None:
            lock = _locks[database] = WriteLock(lock_file_of(database), timeout)
        return lock
