"""A worker context binds its LM cache and gate for the tasks it runs, and only for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dspyq.core.context import configure, context, reset_configuration, setting
from dspyq.lm.cache import LRUCache, default_cache
from dspyq.lm.gate import NoGate, provider_gate
from dspyq.settings import Settings
from dspyq.tasks.app import WORKER_TASK_CLASS, make_app
from dspyq.tasks.batch_jobs import BatchJobs
from dspyq.tasks.context import (
    WorkerContext,
    build_task_context,
    install_worker_context,
    installed_context,
)


class PassingGate(NoGate):
    """A gate of its own, told apart from the default by identity."""


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[WorkerContext]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ctx.db'}")
    built = build_task_context(settings, lm_cache=LRUCache(), lm_gate=PassingGate())
    previous = install_worker_context(built)
    yield built
    install_worker_context(previous)
    built.close()


def test_a_task_runs_with_its_workers_cache_and_gate_bound(ctx: WorkerContext) -> None:
    app = make_app(Settings(), task_cls=WORKER_TASK_CLASS)
    app.conf.task_always_eager = True

    @app.task(bind=True)
    def probe(self: object) -> tuple[bool, bool, bool]:
        return (
            provider_gate() is ctx.lm_gate,
            default_cache() is ctx.lm_cache,
            getattr(self, "context", None) is ctx,
        )

    assert tuple(probe.delay().get()) == (True, True, True)
    # Outside a task nothing is bound: the plain process's cache and no gate.
    assert type(provider_gate()) is NoGate
    assert default_cache() is not ctx.lm_cache


def test_a_plain_context_binds_nothing(tmp_path: Path) -> None:
    plain = build_task_context(Settings(database_url=f"sqlite:///{tmp_path / 'p.db'}"))
    try:
        assert plain.lm_bindings() == {}
        with plain.bound():
            assert type(provider_gate()) is NoGate
    finally:
        plain.close()
    assert installed_context() is not plain


def test_batch_jobs_call_their_listeners_and_refuse_zero_slots() -> None:
    jobs = BatchJobs(2)
    ended: list[str] = []
    remove = jobs.on_job_end(ended.append)
    jobs.job_ended("batch-1")
    remove()
    jobs.job_ended("batch-2")
    assert ended == ["batch-1"]
    with pytest.raises(ValueError):
        jobs.set_slots(0)
    jobs.set_slots(3)
    assert jobs.threads()._max_workers == 3
    jobs.close()


def test_a_bound_setting_wins_over_the_configured_one_and_unbinds_with_its_block() -> None:
    configure(lm_probe="global")
    try:
        assert setting("lm_probe") == "global"
        with context(lm_probe="bound"):
            assert setting("lm_probe") == "bound"
        assert setting("lm_probe") == "global"
        assert setting("never_set", "default") == "default"
    finally:
        reset_configuration()
