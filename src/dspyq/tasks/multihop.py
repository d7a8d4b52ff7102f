"""MultiHopQA as a Celery canvas: decompose -> group of hops -> synthesize.

The root task decomposes the question (its own execution row), then replaces itself
with a chord whose header answers every sub-question in parallel (one task, and one
execution row, per hop) and whose body synthesizes the final answer. ``replace`` gives
the body the root's task id, so the client's Job simply waits on the id it was given.
"""

from __future__ import annotations

from typing import Any

from celery import Task, chord, shared_task, signature

from dspyq.tasks.app import lm_queue
from dspyq.tasks.cancel import skip_if_cancelled
from dspyq.tasks.context import worker_context
from dspyq.tasks.execute import EXECUTE_TASK, run_execution
from dspyq.tasks.messages import ExecutionRequest
from dspyq.tasks.protocol import MULTIHOP_TASK
from dspyq.tasks.references import resolve_or_fail

SYNTHESIZE_TASK = "dspyq.multihop.synthesize"


@shared_task(name=MULTIHOP_TASK, bind=True, max_retries=None)
def multihop_run(self: Task, request: dict[str, Any]) -> Any:
    """Decompose, then fan the hops out and synthesize (replacing this task)."""
    skip_if_cancelled(self)
    root_id = str(self.request.id)
    # Resolved once: the decomposition, every hop and the synthesis run on one version.
    parsed = ExecutionRequest.model_validate(request)
    root = resolve_or_fail(self, worker_context(), parsed, root_id)
    question = root.inputs.get("question")
    step = root.model_copy(
        update={"method": "decompose", "inputs": {"question": question}, "parent_id": root_id}
    )
    decomposed = run_execution(self, step, f"{root_id}:decompose")
    sub_questions: list[str] = list(decomposed["outputs"].get("result") or [question])
    queue = lm_queue(root.provider)
    hops = [
        signature(
            EXECUTE_TASK,
            kwargs={
                "request": root.model_copy(
                    update={
                        "method": "answer_hop",
                        "inputs": {"sub_question": sub_question},
                        "parent_id": root_id,
                    }
                ).model_dump()
            },
            queue=queue,
        )
        for sub_question in sub_questions
    ]
    body = signature(
        SYNTHESIZE_TASK,
        kwargs={
            "request": root.model_copy(
                update={
                    "method": "synthesize",
                    "inputs": {"question": question, "sub_questions": sub_questions},
                }
            ).model_dump()
        },
        queue=queue,
    )
    raise self.replace(chord(hops, body))


@shared_task(name=SYNTHESIZE_TASK, bind=True, max_retries=None)
def multihop_synthesize(
    self: Task, hop_results: list[dict[str, Any]], request: dict[str, Any]
) -> dict[str, Any]:
    """Combine the hops' answers into the final answer (recorded on the root's row)."""
    parsed = ExecutionRequest.model_validate(request)
    sub_questions = list(parsed.inputs.get("sub_questions") or [])
    sub_answers = [str(result["outputs"].get("answer", "")) for result in hop_results]
    step = parsed.model_copy(update={"inputs": {**parsed.inputs, "sub_answers": sub_answers}})
    return run_execution(
        self,
        step,
        str(self.request.id),
        extra_outputs={"sub_questions": sub_questions, "sub_answers": sub_answers},
    )
