"""From a program and its inputs to queue messages: every check at the edge, then send.

``Client.submit`` and ``Client.map`` come here. A request is validated whole (provider
known, inputs fit the program and are JSON, no secret in ``lm_kwargs``) before anything
is published; ``map`` then groups single-module jobs into batch messages
(:func:`~dspyq.tasks.protocol.batch_message`), each job keeping its own task id.
"""

from __future__ import annotations

import reprlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kombu.exceptions import OperationalError as KombuOperationalError

from dspyq.api_client.job import Job
from dspyq.api_client.validation import validate_input_json, validate_program_inputs
from dspyq.core.custom_types import custom_types_to_json
from dspyq.core.module import Module
from dspyq.errors import (
    BrokerUnavailableError,
    ConfigurationError,
    InputError,
    new_correlation_id,
)
from dspyq.masking import mask
from dspyq.program_ref import saved_version_of
from dspyq.settings import split_model
from dspyq.tasks.protocol import (
    BATCH_TASK,
    EXECUTE_TASK,
    JOBS_HEADER,
    MULTIHOP_TASK,
    BatchItem,
    ExecutionRequest,
    batch_message,
    batch_size,
    lm_queue,
)
from dspyq.telemetry.tracing import submit_span

if TYPE_CHECKING:
    from dspyq.api_client.client import Client
    from dspyq.api_client.references import Referenced


def program_spec(program: Module) -> dict[str, Any]:
    """The program as the JSON spec a worker rebuilds it from."""
    from dspyq.core.program import program_to_spec

    return program_to_spec(program).model_dump(mode="json")


def check_models(client: Client, models: Iterable[str]) -> None:
    """Each model is ``provider/name`` with a provider the settings know."""
    for name in models:
        client.settings.provider(split_model(name)[0])  # an unknown provider fails here


def program_lm(client: Client, program: Module) -> str:
    """The model a job runs on when none is given: the program's LM, else the default."""
    lm = program.get_lm()
    if lm is not None:
        return str(lm.model)
    if client.settings.default_lm:
        return client.settings.default_lm
    raise ConfigurationError(
        "no LM for this job: pass lm='openai/gpt-4o-mini' to submit(), set an LM on the "
        "program, or set DSPYQ_DEFAULT_LM"
    )


def referenced(client: Client, program: str | Referenced) -> Referenced:
    """The reference ``program`` is, checked: InputError if it names nothing saved."""
    from dspyq.api_client.references import references_of

    if isinstance(program, str):
        return references_of(client).lookup(program)
    return program


def build_request(
    client: Client,
    program: Module | str | Referenced,
    lm: str | None,
    fallbacks: Sequence[str],
    lm_kwargs: Mapping[str, Any] | None,
    correlation_id: str | None,
    inputs: dict[str, Any],
    *,
    spec: dict[str, Any] | None,
    privacy: str | None = None,
) -> tuple[ExecutionRequest, str]:
    """The checked request for one execution, and the task that runs it."""
    from dspyq.core.context import current
    from dspyq.core.multihop import MultiHopQA
    from dspyq.lm.privacy import requested_level

    by_reference = None
    if not isinstance(program, Module) and _is_reference(program):
        by_reference = referenced(client, program)
        program = by_reference.program
    if not isinstance(program, Module):
        raise InputError(
            f"submit() takes a dspyq Module (Predict, ChainOfThought, ...) or a saved "
            f"program's reference ('qa@production', 'qa:3'), not {type(program).__name__}"
        )
    model = lm or program_lm(client, program)
    check_models(client, [model, *fallbacks])
    validate_program_inputs(program, inputs)
    inputs = custom_types_to_json(inputs)  # Image, Audio ... travel as tagged JSON
    validate_input_json(inputs, client.settings.max_input_bytes)
    origin: dict[str, Any] = {}
    if by_reference is not None:  # the worker resolves it when the job starts
        origin = {"program": {}, "program_ref": by_reference.reference}
    else:
        origin = {"program": spec or program_spec(program)}
        saved = saved_version_of(program, origin["program"])
        if saved is not None:
            origin["program_name"], origin["program_version"] = saved
    try:
        request = ExecutionRequest(
            **origin,
            inputs=inputs,
            lm=model,
            lm_kwargs=dict(lm_kwargs or {}),
            correlation_id=correlation_id or new_correlation_id(),
            fallbacks=list(fallbacks),
            max_parse_retries=current().get("max_parse_retries"),
            privacy=requested_level(privacy, current().get("privacy")),
        )
    except ValueError as exc:
        raise InputError(f"invalid job: {exc}") from None
    task = MULTIHOP_TASK if isinstance(program, MultiHopQA) else EXECUTE_TASK
    return request, task


def send_many(
    client: Client,
    program: Module | str,
    inputs: Iterable[Mapping[str, Any]],
    lm: str | None,
    fallbacks: Sequence[str],
    lm_kwargs: Mapping[str, Any] | None,
    privacy: str | None = None,
) -> list[Job]:
    """``Client.map``: every request checked first, then sent in batches on one producer."""
    target = referenced(client, program) if isinstance(program, str) else program
    spec = program_spec(target) if isinstance(target, Module) else None
    prepared = [
        build_request(
            client, target, lm, fallbacks, lm_kwargs, None, dict(item), spec=spec, privacy=privacy
        )
        for item in inputs
    ]
    try:
        with client.app.producer_or_acquire() as producer:
            if any(name != EXECUTE_TASK for _, name in prepared):
                return [send(client, name, r, producer=producer) for r, name in prepared]
            requests = [request for request, _ in prepared]
            size = batch_size(len(requests), client.settings.map_batch_size)
            return [
                job
                for start in range(0, len(requests), size)
                for job in _send_batch(client, requests[start : start + size], producer)
            ]
    except _broker_errors(client) as exc:  # the retries ran out: the caller must know
        raise BrokerUnavailableError(
            f"the broker could not take the jobs ({exc}); map() again to send them"
        ) from exc


def _broker_errors(client: Client) -> tuple[type[BaseException], ...]:
    """What a publish raises when the broker is out of reach: kombu's own error once its
    retries ran out, and the transport's errors from a connection broken mid-publish."""
    connection = client.app.connection_for_write()
    try:
        return (KombuOperationalError, *connection.connection_errors, *connection.channel_errors)
    finally:
        connection.release()


def send(client: Client, task_name: str, request: ExecutionRequest, producer: Any = None) -> Job:
    """Publish one execution to its provider's queue; its :class:`Job`."""
    task_id = uuid.uuid4().hex
    # The root span of the job's trace (a no-op unless DSPYQ_TELEMETRY__OTLP_ENDPOINT).
    with submit_span(client.settings, request.correlation_id, task_name):
        client.app.send_task(
            task_name,
            kwargs={"request": request.model_dump(mode="json")},
            queue=lm_queue(request.provider),
            task_id=task_id,
            producer=producer,
            # Flower shows these instead of the raw JSON request.
            shadow=f"{task_name}[{_shown_program(request)}]",
            kwargsrepr=_shown_arguments(request),
        )
    return Job(client, task_id, request.correlation_id)


def _send_batch(client: Client, requests: list[ExecutionRequest], producer: Any) -> list[Job]:
    if len(requests) == 1:
        return [send(client, EXECUTE_TASK, requests[0], producer=producer)]
    items = [BatchItem(uuid.uuid4().hex, r.model_dump(mode="json")) for r in requests]
    publish_batch(client, BATCH_TASK, items, requests[0], producer)
    return [
        Job(client, item.task_id, r.correlation_id) for item, r in zip(items, requests, strict=True)
    ]


def _is_reference(program: object) -> bool:
    from dspyq.api_client.references import Referenced

    return isinstance(program, str | Referenced)


def _shown_program(request: ExecutionRequest) -> str:
    """The program as Flower names the message: its reference, else its class."""
    if request.program_ref is not None:
        return request.program_ref
    return str(request.program.get("kind", "?")).rpartition(":")[2]


def publish_batch(
    client: Client,
    task_name: str,
    items: Sequence[BatchItem],
    first: ExecutionRequest,
    producer: Any,
) -> None:
    """Publish one batch message of ``items`` (all on ``first``'s provider queue)."""
    kind = _shown_program(first)
    client.app.send_task(
        task_name,
        kwargs=batch_message(items),
        queue=lm_queue(first.provider),
        producer=producer,
        shadow=f"{task_name}[{kind} x{len(items)}]",
        kwargsrepr=_shown_arguments(first, len(items)),
        headers={JOBS_HEADER: len(items)},  # the worker's prefetch counts the jobs
    )


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxdict, _SHOWN.maxstring, _SHOWN.maxother = 3, 8, 80, 80


def _shown_arguments(request: ExecutionRequest, jobs: int = 1) -> str:
    """What Flower shows as a message's arguments: the LM, the correlation id and the
    (first job's) inputs, shortened.

    Given to Celery, which would otherwise build its own by walking the whole request,
    program spec included: about half a millisecond of the client's CPU per message.
    """
    shown: dict[str, Any] = {
        "lm": request.lm,
        "correlation_id": request.correlation_id,
        "inputs": mask(request.inputs),  # an input named like a secret is shown masked
    }
    if jobs > 1:
        shown = {"jobs": jobs, **shown}
    return _SHOWN.repr(shown)
