"""Per-process resources a task needs besides the stores: a pooled HTTP client per job
thread and the programs already built.

Each is built once per worker process (threads of the process share them) and held by
the process's :class:`~dspyq.tasks.context.WorkerContext`, so a task costs no
connection set-up and, for a program the process has seen, no rebuild.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from dspyq.core.module import Module
from dspyq.core.program import program_from_spec
from dspyq.lm.providers.transport import HTTPPath, http_client

HTTP_TIMEOUT = httpx.Timeout(60.0, connect=10.0)

PROGRAM_CACHE_SIZE = 128
"""Distinct program specs whose built program a worker process keeps."""

HTTP_MAX_CONNECTIONS = 1000
"""Connections to LM providers one worker process may hold open: one per LM call in
flight, so a worker running hundreds of jobs at once is not held back by its pool."""


JOB_HTTP_CONNECTIONS = 16
"""Connections of each thread's own HTTP client (a job's program may make several calls
at once)."""


class ThreadHTTPClients:
    """An HTTP client of its own for each thread that runs jobs.

    httpx's connection pool takes one lock for every request and, under it, looks through
    all its connections: one pool shared by a hundred job threads made them queue on that
    lock and spend their CPU walking hundreds of idle connections. A job's thread runs
    one job at a time, so a small pool per thread holds about the same connections,
    with no one to wait for. The clients share one TLS context: building one (reading
    the CA bundle) costs 20 ms of CPU, the rest of a client a tenth of a millisecond.
    """

    def __init__(self, timeout: httpx.Timeout, path: HTTPPath = "transport") -> None:
        self.timeout = timeout
        self.path = path
        self._tls = httpx.create_ssl_context()
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def get(self) -> httpx.Client:
        """The calling thread's client, created on its first call."""
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            limits = httpx.Limits(
                max_connections=JOB_HTTP_CONNECTIONS,
                max_keepalive_connections=JOB_HTTP_CONNECTIONS,
            )
            client = self._local.client = http_client(
                self.path, limits=limits, timeout=self.timeout, verify=self._tls
            )
            with self._lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()


class ProgramCache:
    """Builds each program spec once per process and hands every job a deep copy.

    Rebuilding a program from JSON creates its Signature classes (pydantic models):
    several milliseconds for a Predict, tens for MultiHopQA, where a deep copy of the
    built program takes a fraction of one. Jobs still never share a program instance.
    """

    def __init__(self, allowed_prefixes: Sequence[str] | None, size: int = PROGRAM_CACHE_SIZE):
        self.allowed_prefixes = allowed_prefixes
        self.size = size
        self._built: OrderedDict[str, Module] = OrderedDict()
        self._lock = threading.Lock()
        self._last: tuple[Mapping[str, Any], str] | None = None

    def build(self, spec: Mapping[str, Any]) -> Module:
        """A new program as ``spec`` describes it (errors as :func:`program_from_spec`)."""
        key = self._key_of(spec)
        with self._lock:
            template = self._built.get(key)
            if template is not None:
                self._built.move_to_end(key)
        if template is None:
            # Built outside the lock; two threads racing on a new spec both build it.
            template = program_from_spec(spec, allowed_prefixes=self.allowed_prefixes)
            with self._lock:
                self._built[key] = template
                while len(self._built) > self.size:
                    self._built.popitem(last=False)
        return template.deepcopy()

    def _key_of(self, spec: Mapping[str, Any]) -> str:
        # The jobs of a batch share one spec object: serialise it once, not per job (an
        # optimized program's spec, demos and all, can take a millisecond).
        last = self._last
        if last is not None and last[0] is spec:
            return last[1]
        key = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        self._last = (spec, key)  # holds the spec, so its id is not reused meanwhile
        return key
