"""Runtime configuration: configure() sets defaults, context() overrides per thread/task."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from dspyq.core.context import bind_context, configure, context, current, reset_configuration


@pytest.fixture(autouse=True)
def clean_configuration() -> Iterator[None]:
    reset_configuration()
    yield
    reset_configuration()


def test_defaults_have_no_lm_no_adapter_no_trace():
    config = current()
    assert config.lm is None and config.adapter is None and config.trace is None


def test_configure_sets_process_wide_values_and_extra_keys():
    configure(lm="lm-a", num_threads=4)
    assert current().lm == "lm-a"
    assert current().num_threads == 4
    assert current().get("missing", "dflt") == "dflt"
    with pytest.raises(AttributeError):
        _ = current().missing


def test_context_overrides_inside_the_block_only():
    configure(lm="global")
    with context(lm="local", trace=[]) as config:
        assert config.lm == "local"
        assert current().lm == "local"
        assert current().trace == []
        with context(adapter="inner"):
            assert current().lm == "local" and current().adapter == "inner"
        assert current().adapter is None
    assert current().lm == "global" and current().trace is None


def test_context_is_restored_after_an_exception():
    with pytest.raises(RuntimeError), context(lm="x"):
        raise RuntimeError("boom")
    assert current().lm is None


def test_config_snapshot_is_read_only():
    with pytest.raises(AttributeError):
        current().lm = "nope"  # type: ignore[misc]


def test_plain_threads_do_not_see_overrides_but_bound_functions_do():
    seen: dict[str, object] = {}

    def read(key: str) -> None:
        seen[key] = current().lm

    with context(lm="parent"):
        plain = threading.Thread(target=read, args=("plain",))
        bound = threading.Thread(target=bind_context(read), args=("bound",))
        plain.start(), bound.start()
        plain.join(), bound.join()
    assert seen == {"plain": None, "bound": "parent"}


def test_one_bound_function_runs_in_many_pool_threads_with_isolated_overrides():
    def work(i: int) -> tuple[object, object]:
        with context(adapter=f"worker-{i}"):
            return current().lm, current().adapter

    with context(lm="parent"):
        task = bind_context(work)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(task, range(32)))
    assert results == [("parent", f"worker-{i}") for i in range(32)]


def test_asyncio_tasks_keep_their_own_overrides():
    async def worker(name: str) -> object:
        with context(lm=name):
            await asyncio.sleep(0.01)
            return current().lm

    async def main() -> list[object]:
        return await asyncio.gather(*(worker(f"lm-{i}") for i in range(5)))

    assert asyncio.run(main()) == [f"lm-{i}" for i in range(5)]
    assert current().lm is None
