"""``BootstrapFewShot``: demos made from the teacher's own successful runs.

The teacher (by default a copy of the student holding labelled demos) runs on the
training examples one by one with call tracing on. When the metric accepts its
prediction, every predictor call in the trace becomes an *augmented* demo for that
predictor: the inputs it saw and everything it produced, intermediate fields such as
``reasoning`` included. The student gets up to ``max_bootstrapped_demos`` of those,
then labelled examples up to ``max_labeled_demos``. Semantics follow DSPy 3.4.1.

Running the teacher on one example is :func:`bootstrap_example`: a program and an
example in, a JSON-able :class:`BootstrapOutcome` out, so a coordinator can run the
examples as separate tasks. :meth:`BootstrapFewShot.bootstrap_span` runs a slice of
the trainset and :meth:`BootstrapFewShot.compile_from_outcomes` takes such outcomes in
trainset order, so the slices can run in different tasks and give DSPy's demos.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dspyq.core.context import bind_context, current
from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.errors import DspyqError, InputError
from dspyq.optimize.bootstrap_trace import BootstrapOutcome, bootstrap_example
from dspyq.optimize.evaluate import DEFAULT_MAX_ERRORS, Metric
from dspyq.optimize.labeled import LabeledFewShot
from dspyq.optimize.teleprompter import CompileInputs, Teleprompter
from dspyq.settings import get_settings

__all__ = ["BootstrapFewShot", "BootstrapOutcome", "bootstrap_example"]

logger = logging.getLogger(__name__)


class _OutcomeMissing(Exception):
    """The ordered walk reached an example whose outcome was not given."""


class BootstrapFewShot(Teleprompter):
    """Compose each predictor's demos from bootstrapped traces and labelled examples.

    ``metric(example, prediction, trace)`` decides which teacher runs become demos
    (with ``metric_threshold``, a numeric value must reach it). ``teacher_settings``
    are applied with ``context(...)`` around the teacher (e.g. ``{"lm": big_lm}``).
    An example is tried up to ``max_rounds`` times. Failing examples count towards
    ``max_errors`` (default: the ``max_errors`` runtime setting, else 10); the error
    that reaches it is raised. Demo counts and rounds default to
    ``settings.optimization.bootstrap``.

    ``num_threads`` (dspyq's addition; default one by one, as DSPy) bootstraps that many
    examples at once, each on its own copy of the teacher, and takes their outcomes in
    trainset order: the same demos as one by one, at the price of at most
    ``num_threads - 1`` extra teacher runs past the last demo needed.
    """

    _known: Mapping[int, list[BootstrapOutcome]] | None = None

    def __init__(
        self,
        metric: Metric | None = None,
        metric_threshold: float | None = None,
        teacher_settings: Mapping[str, Any] | None = None,
        max_bootstrapped_demos: int | None = None,
        max_labeled_demos: int | None = None,
        max_rounds: int | None = None,
        max_errors: int | None = None,
        num_threads: int | None = None,
    ) -> None:
        self.num_threads = num_threads
        self.metric = metric
        self.metric_threshold = metric_threshold
        self.teacher_settings: dict[str, Any] = dict(teacher_settings or {})
        self.max_bootstrapped_demos, self.max_labeled_demos, self.max_rounds = (
            get_settings().optimization.bootstrap.limits(
                max_bootstrapped_demos, max_labeled_demos, max_rounds
            )
        )
        self.max_errors = max_errors
        self.error_count = 0

    def _compile(self, inputs: CompileInputs) -> Module:
        """A compiled copy of ``student`` with bootstrapped and labelled demos.

        ``valset`` is accepted for the common call shape and not used: bootstrapping
        validates on the trainset.
        """
        student, trainset, teacher = inputs.student, inputs.trainset, inputs.teacher
        self.trainset = list(trainset)
        self.error_count = 0
        self._prepare_student_and_teacher(student, teacher)
        self._map_predictor_names()
        self._bootstrap()
        self.student = self._train()
        self.student._compiled = True
        return self.student

    def bootstrap_span(
        self,
        student: Module,
        *,
        trainset: Sequence[Example],
        start: int,
        stop: int,
        teacher: Module | None = None,
    ) -> dict[int, list[BootstrapOutcome]]:
        """Each example of ``trainset[start:stop]``'s rounds (until one succeeds), by index,
        ``num_threads`` at a time; the teacher is prepared as :meth:`compile` does."""
        self.trainset = list(trainset)
        self._prepare_student_and_teacher(student, teacher)
        self._map_predictor_names()
        indices = range(start, min(stop, len(self.trainset)))
        threads = max(1, min(self.num_threads or 1, len(indices)))
        run = bind_context(self._rounds_of)
        with ThreadPoolExecutor(threads, thread_name_prefix="dspyq-bootstrap") as pool:
            futures = {
                i: pool.submit(run, self.teacher.deepcopy(), self.trainset[i]) for i in indices
            }
            return {i: future.result() for i, future in futures.items()}

    def compile_from_outcomes(
        self,
        student: Module,
        *,
        trainset: Sequence[Example],
        outcomes: Mapping[int, list[BootstrapOutcome]],
        teacher: Module | None = None,
    ) -> Module | None:
        """:meth:`compile` with the teacher's runs already made (``outcomes`` by trainset
        index, e.g. from :meth:`bootstrap_span` in several tasks): the same walk in
        trainset order, hence the same demos. None when the walk needs an example that
        ``outcomes`` lacks (bootstrap further and call again)."""
        self.trainset = list(trainset)
        self.error_count = 0
        self._prepare_student_and_teacher(student, teacher)
        self._map_predictor_names()
        self._known = outcomes
        try:
            self._bootstrap()
        except _OutcomeMissing:
            return None
        finally:
            self._known = None
        self.student = self._train()
        self.student._compiled = True
        return self.student

    # --- preparation ----------------------------------------------------------------

    def _prepare_student_and_teacher(self, student: Module, teacher: Module | None) -> None:
        self.student = student.reset_copy()
        self.teacher = teacher.deepcopy() if teacher is not None else student.deepcopy()
        if getattr(self.student, "_compiled", False):
            raise InputError(
                f"{type(student).__name__} is already compiled; pass the uncompiled program "
                "as the student (a compiled one may be the teacher)."
            )
        if self.max_labeled_demos and not getattr(self.teacher, "_compiled", False):
            labeled = LabeledFewShot(k=self.max_labeled_demos)
            self.teacher = labeled.compile(self.teacher.reset_copy(), trainset=self.trainset)

    def _map_predictor_names(self) -> None:
        """Check the teacher has the student's shape; remember the predictor names."""
        student_predictors = self.student.named_predictors()
        teacher_predictors = self.teacher.named_predictors()
        if len(student_predictors) != len(teacher_predictors):
            raise InputError(
                "Student and teacher must have the same number of predictors: "
                f"{len(student_predictors)} != {len(teacher_predictors)}."
            )
        for (name, mine), (their_name, theirs) in zip(
            student_predictors, teacher_predictors, strict=True
        ):
            if name != their_name:
                raise InputError(
                    "Student and teacher must have the same program structure: "
                    f"{name!r} != {their_name!r}."
                )
            if not mine.signature.equals(theirs.signature):
                raise InputError(
                    f"Student and teacher must have the same signatures at {name!r}: "
                    f"{mine.signature.signature!r} != {theirs.signature.signature!r}."
                )
            if mine is theirs:
                raise InputError(f"Student and teacher share the predictor {name!r}.")
        self.predictor_names = [name for name, _ in student_predictors]

    # --- bootstrapping --------------------------------------------------------------

    def bootstrap_one(self, example: Example, round_idx: int = 0) -> BootstrapOutcome:
        """Run this optimizer's teacher on one example (see :func:`bootstrap_example`)."""
        return bootstrap_example(
            self.teacher,
            example,
            metric=self.metric,
            metric_threshold=self.metric_threshold,
            teacher_settings=self.teacher_settings,
            round_idx=round_idx,
        )

    def _bootstrap(self) -> None:
        """Walk the trainset until ``max_bootstrapped_demos`` examples gave a full trace."""
        self.name2traces: dict[str, list[Example]] = {name: [] for name in self.predictor_names}
        bootstrapped: set[int] = set()
        attempts = 0
        tried = 0
        for index, outcomes in self._outcomes_in_order(lambda: len(bootstrapped)):
            tried += 1
            for outcome in outcomes:
                attempts += 1
                self._count_error(outcome)
                if outcome.success:
                    for name, demos in outcome.demos.items():
                        self.name2traces.setdefault(name, []).extend(Example(d) for d in demos)
                    bootstrapped.add(index)
                    break
        logger.info(
            "Bootstrapped %d full traces after %d examples for up to %d rounds, "
            "amounting to %d attempts.",
            len(bootstrapped),
            tried,
            self.max_rounds,
            attempts,
        )
        # The examples that gave no trace are the pool of labelled demos.
        self.validation = [x for i, x in enumerate(self.trainset) if i not in bootstrapped]
        random.Random(0).shuffle(self.validation)

    def _rounds_of(self, teacher: Module, example: Example) -> list[BootstrapOutcome]:
        """One example's rounds, until one succeeds (each outcome, in order)."""
        outcomes = []
        for round_idx in range(self.max_rounds):
            outcome = bootstrap_example(
                teacher,
                example,
                metric=self.metric,
                metric_threshold=self.metric_threshold,
                teacher_settings=self.teacher_settings,
                round_idx=round_idx,
            )
            outcomes.append(outcome)
            if outcome.success:
                break
        return outcomes

    def _outcomes_in_order(self, found: Any) -> Any:
        """``(index, outcomes)`` per trainset example, in order, until ``found()`` reaches
        ``max_bootstrapped_demos``; windows of ``num_threads`` examples run at once, or
        the outcomes given to :meth:`compile_from_outcomes` are replayed."""
        if self._known is not None:
            for index in range(len(self.trainset)):
                if found() >= self.max_bootstrapped_demos:
                    return
                if index not in self._known:
                    raise _OutcomeMissing(index)
                yield index, self._known[index]
            return
        threads = max(1, self.num_threads or 1)
        if threads == 1:
            for index, example in enumerate(self.trainset):
                if found() >= self.max_bootstrapped_demos:
                    return
                yield index, self._rounds_of(self.teacher, example)
            return
        run = bind_context(self._rounds_of)
        with ThreadPoolExecutor(threads, thread_name_prefix="dspyq-bootstrap") as pool:
            for start in range(0, len(self.trainset), threads):
                if found() >= self.max_bootstrapped_demos:
                    return
                window = self.trainset[start : start + threads]
                futures = [pool.submit(run, self.teacher.deepcopy(), ex) for ex in window]
                for offset, future in enumerate(futures):
                    if found() >= self.max_bootstrapped_demos:
                        return
                    yield start + offset, future.result()

    def _count_error(self, outcome: BootstrapOutcome) -> None:
        if outcome.error is None:
            return
        self.error_count += 1
        limit = self.max_errors
        if limit is None:
            configured = current().get("max_errors")
            limit = DEFAULT_MAX_ERRORS if configured is None else int(configured)
        if self.error_count >= limit:
            if outcome.exception is not None:
                raise outcome.exception
            raise DspyqError(
                f"Bootstrapping stopped: {self.error_count} examples failed, "
                f"reaching max_errors={limit}. Last error: {outcome.error}",
                context={"errors": self.error_count, "max_errors": limit},
            )

    def _train(self) -> Module:
        """Give each student predictor its augmented demos, then labelled ones up to the cap.

        As in DSPy, every predictor draws its labelled demos from the whole pool of
        examples that gave no trace, with one ``random.Random(0)`` shared by the
        predictors in ``named_predictors()`` order: a later predictor's sample is the
        next draw of that generator, not a subset of the previous predictor's.
        """
        rng = random.Random(0)
        pool: list[Example] = self.validation
        for name, predictor in self.student.named_predictors():
            augmented = self.name2traces.get(name, [])[: self.max_bootstrapped_demos]
            sample_size = max(0, min(self.max_labeled_demos - len(augmented), len(pool)))
            predictor.demos = augmented + rng.sample(pool, sample_size)
        return self.student
