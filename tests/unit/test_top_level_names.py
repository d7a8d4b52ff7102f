"""DSPy 3.4.1 names added at dspyq's top level and in ``dspyq.streaming`` behave as DSPy's."""

from __future__ import annotations

import asyncio
from typing import Any

import dspy
import pytest

import dspyq


def test_base_module_and_signature_meta_answer_isinstance_as_in_dspy() -> None:
    def checks(pkg: Any) -> list[bool]:
        predict = pkg.Predict("question -> answer")
        return [
            isinstance(predict, pkg.BaseModule),
            isinstance(pkg.ChainOfThought("q -> a"), pkg.BaseModule),
            issubclass(pkg.Module, pkg.BaseModule),
            isinstance(predict.signature, pkg.SignatureMeta),
            isinstance(pkg.Signature, pkg.SignatureMeta),
            isinstance("q -> a", pkg.SignatureMeta),
        ]

    assert checks(dspyq) == checks(dspy)


def test_streaming_has_dspys_names() -> None:
    missing = set(dspy.streaming.__all__) - set(dspyq.streaming.__all__)
    assert missing == {"streaming_response"}  # an SSE body of litellm's chunk objects


def test_apply_sync_streaming_yields_and_raises_as_in_dspy() -> None:
    def run(pkg: Any) -> list[Any]:
        async def numbers() -> Any:
            for n in range(3):
                await asyncio.sleep(0)
                yield n
            raise KeyError("done")

        seen: list[Any] = []
        with pytest.raises(KeyError) as caught:
            for item in pkg.streaming.apply_sync_streaming(numbers()):
                seen.append(item)
        return [*seen, repr(caught.value)]

    assert run(dspyq) == run(dspy) == [0, 1, 2, "KeyError('done')"]
