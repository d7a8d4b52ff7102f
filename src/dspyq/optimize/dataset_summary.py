"""MIPROv2's dataset summary: the prompt model's observations on the trainset, summarised.

DSPy 3.4.1's signatures and loop (``create_dataset_summary``), and ``strip_prefix``,
which cleans the prompt model's answers for the grounded proposer too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from dspyq.core.context import context, current
from dspyq.core.example import Example
from dspyq.core.predict import Predict
from dspyq.core.signature import InputField, OutputField, Signature

__all__ = [
    "DatasetDescriptor",
    "DatasetDescriptorWithPriorObservations",
    "ObservationSummarizer",
    "create_dataset_summary",
    "strip_prefix",
]

logger = logging.getLogger(__name__)


class DatasetDescriptor(Signature):
    """Given several examples from a dataset please write observations about trends that hold for most or all of the samples. Some areas you may consider in your observations: topics, content, syntax, conciceness, etc. It will be useful to make an educated guess as to the nature of the task this dataset will enable. Don't be afraid to be creative"""

    examples: str = InputField(desc="Sample data points from the dataset")
    observations: str = OutputField(
        desc="Somethings that holds true for most or all of the data you observed"
    )


class DatasetDescriptorWithPriorObservations(Signature):
    """Given several examples from a dataset please write observations about trends that hold for most or all of the samples. I will also provide you with a few observations I have already made.  Please add your own observations or if you feel the observations are comprehensive say 'COMPLETE' Some areas you may consider in your observations: topics, content, syntax, conciceness, etc. It will be useful to make an educated guess as to the nature of the task this dataset will enable. Don't be afraid to be creative"""

    examples: str = InputField(desc="Sample data points from the dataset")
    prior_observations: str = InputField(desc="Some prior observations I made about the data")
    observations: str = OutputField(
        desc="Somethings that holds true for most or all of the data you observed or COMPLETE if you have nothing to add"
    )


class ObservationSummarizer(Signature):
    """Given a series of observations I have made about my dataset, please summarize them into a brief 2-3 sentence summary which highlights only the most important details."""

    observations: str = InputField(desc="Observations I have made about my dataset")
    summary: str = OutputField(
        desc="Two to Three sentence summary of only the most significant highlights of my observations"
    )


_PREFIX = re.compile(r"^[*\s]*(?:[\w'\-]+\s+){0,4}[\w'\-]+:\s*")


def strip_prefix(text: Any) -> str:
    """Drop a leading label of up to five words and a colon (``"Proposed Instruction: ..."``)
    and surrounding double quotes, as DSPy cleans prompt-model answers."""
    return _PREFIX.sub("", str(text if text is not None else ""), count=1).strip('"')


def _examples_text(examples: Sequence[Example]) -> str:
    """The examples as the summariser sees them; input keys sorted so the text is stable."""
    shown = []
    for example in examples:
        fields = {k: v for k, v in example.items()}
        keys = getattr(example, "_input_keys", None)
        inputs = "{" + ", ".join(repr(k) for k in sorted(keys)) + "}" if keys else "None"
        shown.append(f"Example({fields}) (input_keys={inputs})")
    return "[" + ", ".join(shown) + "]"


def create_dataset_summary(
    trainset: Sequence[Example], view_data_batch_size: int, prompt_model: Any
) -> str:
    """Observe the trainset batch by batch (at most 10 calls, stopping after 5 'COMPLETE's),
    then summarise the observations in two or three sentences."""
    trainset = list(trainset)
    with context(lm=prompt_model or current().lm):
        describe = Predict(DatasetDescriptor, n=1, temperature=1.0)
        observations = str(
            describe(examples=_examples_text(trainset[:view_data_batch_size])).observations
        )
        skips = 0
        calls = 0
        try:
            for start in range(view_data_batch_size, len(trainset), view_data_batch_size):
                calls += 1
                if calls >= 10:
                    break
                more = Predict(DatasetDescriptorWithPriorObservations, n=1, temperature=1.0)(
                    prior_observations=observations,
                    examples=_examples_text(trainset[start : start + view_data_batch_size]),
                ).observations
                more = str(more)
                if more[:8].upper() == "COMPLETE":
                    skips += 1
                    if skips >= 5:
                        break
                    continue
                observations += more
        except Exception as exc:  # keep what was observed so far, as DSPy does
            logger.warning("Dataset observation stopped early: %s", exc)
        summary = Predict(ObservationSummarizer, n=1, temperature=1.0)(observations=observations)
    return strip_prefix(summary.summary)
