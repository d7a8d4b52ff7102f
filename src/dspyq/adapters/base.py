"""The adapter base: turns (signature, demos, inputs) into chat messages and completions back into values.

The message layout is DSPy 3.4.1's, byte for byte::

    [system] + demos (user/assistant pairs) + History turns + [user]

The system message is the field descriptions, the field structure and the task
description. Subclasses decide the structure, the reminder closing the last user
message, how demo outputs are written, how completions are parsed and which adapter
(if any) retries a call whose completion cannot be parsed.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from pydantic.fields import FieldInfo

from dspyq.adapters.native_tools import native_reasoning, native_tool_calls, plan_tool_calls
from dspyq.adapters.values import format_field_value, parse_value
from dspyq.core.callbacks import with_callbacks
from dspyq.core.custom_types import Type, expand_custom_types
from dspyq.core.signature import Signature, field_extra
from dspyq.core.types import History, allows_none, annotation_name
from dspyq.errors import AdapterParseError

Message = dict[str, Any]

INCOMPLETE_DEMO_PREFIX = (
    "This is an example of the task, though some input or output fields are not supplied."
)
MISSING_FIELD_TEXT = "Not supplied for this particular example. "
EMPTY_RESPONSE_MESSAGE = "The LM returned an empty or null response."


def parse_failure(
    adapter_name: str,
    signature: type[Signature],
    lm_response: str,
    message: str | None = None,
    parsed_result: Mapping[str, Any] | None = None,
) -> AdapterParseError:
    """An AdapterParseError whose text is DSPy's (what was expected, what was found)."""
    text = f"{message}\n\n" if message else ""
    text += (
        f"Adapter {adapter_name} failed to parse the LM response. \n\n"
        f"LM Response: {lm_response} \n\n"
        "Expected to find output fields in the LM response: "
        f"[{', '.join(signature.output_fields)}] \n\n"
    )
    if parsed_result is not None:
        text += (
            f"Actual output fields parsed from the LM response: [{', '.join(parsed_result)}] \n\n"
        )
    return AdapterParseError(
        text,
        adapter_name=adapter_name,
        signature=signature,
        lm_response=lm_response,
        parsed_result=dict(parsed_result) if parsed_result is not None else None,
    )


def field_description_block(fields: Mapping[str, FieldInfo]) -> str:
    """``1. `name` (Type): desc`` lines, with a ``Constraints:`` line where a field has any."""
    lines = []
    for index, (name, field) in enumerate(fields.items(), 1):
        extra = field_extra(field)
        desc = extra.get("desc", "")
        desc = "" if desc == f"${{{name}}}" else desc
        for custom in Type.extract_custom_type_from_annotation(field.annotation):
            if custom.description():
                desc += (
                    f"\n    Type description of {annotation_name(custom)}: {custom.description()}"
                )
        line = f"{index}. `{name}` ({annotation_name(field.annotation)}): {desc}"
        if extra.get("constraints"):
            line += f"\nConstraints: {extra['constraints']}"
        lines.append(line)
    return "\n".join(lines).strip()


def as_field_dict(record: Any) -> dict[str, Any]:
    """A demo or history turn (dict, Example, or anything dict-like) as a plain dict."""
    if isinstance(record, Mapping):
        return dict(record)
    # Values as stored (a model stays a model): TwoStepAdapter writes them with str().
    items = getattr(record, "items", None)
    if callable(items):
        return dict(items())
    to_dict = getattr(record, "toDict", None)
    if callable(to_dict):
        return dict(to_dict())
    return dict(record)


def history_field_name(signature: type[Signature]) -> str | None:
    """The first input field typed ``History``, if any."""
    for name, field in signature.input_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, History):
            return name
    return None


def with_output_defaults(signature: type[Signature], values: Mapping[str, Any]) -> dict[str, Any]:
    """The parsed outputs in signature order, missing optional ones given their default (or None)."""
    completed: dict[str, Any] = {}
    for name, field in signature.output_fields.items():
        if name in values:
            completed[name] = values[name]
        elif not field.is_required():
            completed[name] = field.get_default(call_default_factory=True)
        elif allows_none(field.annotation):
            completed[name] = None
    return completed


def _exchange(user: str, assistant: str) -> list[Message]:
    """A user message and the assistant's answer to it, as one demo or history turn."""
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


class Adapter:
    """Formats prompts and parses completions for one prompt style (see subclasses)."""

    name: ClassVar[str] = "Adapter"
    use_native_function_calling: bool = False
    parallel_tool_calls: bool | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A subclass's own format/parse get callbacks too, as DSPy wraps them.
        super().__init_subclass__(**kwargs)
        for method in ("format", "parse"):
            if method in cls.__dict__:
                setattr(cls, method, with_callbacks(cls.__dict__[method]))

    # --- prompt formatting -------------------------------------------------------

    @with_callbacks
    def format(
        self, signature: type[Signature], demos: list[Any], inputs: Mapping[str, Any]
    ) -> list[Message]:
        """The chat messages for one call: system, demos, history turns, then the request."""
        inputs_left = dict(inputs)
        history_name = history_field_name(signature)
        request_signature = signature
        history_messages: list[Message] = []
        if history_name is not None:
            request_signature = signature.delete(history_name)
            if history_name in inputs_left:
                # Like DSPy: the value must have ``.messages`` (else AttributeError).
                turns = list(inputs_left.pop(history_name).messages)
                history_messages = self.format_conversation_history(request_signature, turns)
        messages: list[Message] = [
            {"role": "system", "content": self.format_system_message(signature)}
        ]
        messages.extend(self.format_demos(signature, demos))
        messages.extend(history_messages)
        content = self.format_user_message_content(
            request_signature, inputs_left, main_request=True
        )
        if content:
            messages.append({"role": "user", "content": content})
        return [expand_custom_types(message) for message in messages]

    def format_system_message(self, signature: type[Signature]) -> str:
        return (
            f"{self.format_field_description(signature)}\n"
            f"{self.format_field_structure(signature)}\n"
            f"{self.format_task_description(signature)}"
        )

    def format_field_description(self, signature: type[Signature]) -> str:
        return (
            f"Your input fields are:\n{field_description_block(signature.input_fields)}\n"
            f"Your output fields are:\n{field_description_block(signature.output_fields)}"
        )

    def format_field_structure(self, signature: type[Signature]) -> str:
        raise NotImplementedError

    def format_task_description(self, signature: type[Signature]) -> str:
        instructions = textwrap.dedent(signature.instructions)
        objective = ("\n" + " " * 8).join(["", *instructions.splitlines()])
        return f"In adhering to this structure, your objective is: {objective}"

    def format_user_message_content(
        self,
        signature: type[Signature],
        inputs: Mapping[str, Any],
        prefix: str = "",
        suffix: str = "",
        main_request: bool = False,
    ) -> str:
        parts = [prefix]
        for name, field in signature.input_fields.items():
            if name in inputs:
                parts.append(f"[[ ## {name} ## ]]\n{format_field_value(field, inputs[name])}")
        if main_request:
            requirements = self.user_message_output_requirements(signature)
            if requirements is not None:
                parts.append(requirements)
        parts.append(suffix)
        return "\n\n".join(parts).strip()

    def user_message_output_requirements(self, signature: type[Signature]) -> str | None:
        return None

    def format_assistant_message_content(
        self,
        signature: type[Signature],
        outputs: Mapping[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        raise NotImplementedError

    def format_demos(self, signature: type[Signature], demos: Iterable[Any]) -> list[Message]:
        """Demo turns: incomplete demos (marked as such) first, then complete ones.

        A demo is complete when every field is present and not None; incomplete demos
        need at least one input and one output, otherwise they are dropped.
        """
        complete: list[dict[str, Any]] = []
        incomplete: list[dict[str, Any]] = []
        for raw in demos:
            demo = as_field_dict(raw)
            if all(name in demo and demo[name] is not None for name in signature.fields):
                complete.append(demo)
            elif any(k in demo for k in signature.input_fields) and any(
                k in demo for k in signature.output_fields
            ):
                incomplete.append(demo)
        messages: list[Message] = []
        groups = ((incomplete, INCOMPLETE_DEMO_PREFIX, MISSING_FIELD_TEXT), (complete, "", None))
        for demos_group, prefix, missing in groups:
            for demo in demos_group:
                messages += _exchange(
                    self.format_user_message_content(signature, demo, prefix=prefix),
                    self.format_assistant_message_content(
                        signature, demo, missing_field_message=missing
                    ),
                )
        return messages

    def format_conversation_history(
        self, signature: type[Signature], turns: list[dict[str, Any]]
    ) -> list[Message]:
        """Each past turn as a user request and the assistant's answer (empty parts left out).

        The reminder closes a turn's user message only when the turn has an input field.
        """
        messages: list[Message] = []
        for turn in turns:
            has_input = any(name in turn for name in signature.input_fields)
            user = self.format_user_message_content(signature, turn, main_request=has_input)
            if user:
                messages.append({"role": "user", "content": user})
            assistant = self.format_assistant_message_content(signature, turn)
            if assistant:
                messages.append({"role": "assistant", "content": assistant})
        return messages

    # --- parsing and calling -------------------------------------------------------

    @with_callbacks
    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        raise NotImplementedError

    def _parse_field(self, signature: type[Signature], name: str, raw: Any, completion: str) -> Any:
        """The value of output ``name`` read from ``raw``; a failure names the field and value."""
        try:
            return parse_value(raw, signature.output_fields[name].annotation)
        except ValueError as exc:  # pydantic's too; other errors propagate, as in DSPy
            raise parse_failure(
                self.name,
                signature,
                completion,
                message=f"Failed to parse field {name} with value {raw} from the LM response. "
                f"Error message: {exc}",
            ) from exc

    def _complete_outputs(
        self, signature: type[Signature], values: dict[str, Any], completion: str
    ) -> dict[str, Any]:
        """``values`` in signature order with optional outputs filled in; a parse error if any is missing."""
        values = with_output_defaults(signature, values)
        if values.keys() != signature.output_fields.keys():
            raise parse_failure(self.name, signature, completion, parsed_result=values)
        return values

    def _fallback_adapter(self) -> Adapter | None:
        """The adapter to try once more with when a completion cannot be parsed; None: raise."""
        return None

    def _parse_outputs(
        self,
        signature: type[Signature],
        outputs: Iterable[Any],
        original: type[Signature] | None = None,
    ) -> list[dict[str, Any]]:
        """Parse each completion; native tool calls fill ``original``'s ToolCalls field."""
        original = original or signature
        values = []
        for output in outputs:
            text = output.get("text") if isinstance(output, Mapping) else output
            calls_name, calls = native_tool_calls(output, original)
            if text and calls is None:
                value = self.parse(signature, str(text))
            elif calls is not None:
                try:  # text beside the calls is read when it parses, as in DSPy
                    value = (
                        self.parse(signature, str(text)) if text and signature.output_fields else {}
                    )
                except AdapterParseError:
                    value = {}
                value = with_output_defaults(original, value)
            else:
                raise parse_failure(
                    self.name, original, str(output), message=EMPTY_RESPONSE_MESSAGE
                )
            for name in original.output_fields:
                value.setdefault(name, None)
            if calls_name is not None:
                value[calls_name] = calls
            value.update(native_reasoning(output, original))
            values.append(value)
        return values

    def _plan(
        self,
        lm: Any,
        lm_kwargs: dict[str, Any],
        signature: type[Signature],
        inputs: Mapping[str, Any],
    ) -> type[Signature]:
        """The signature the prompt shows (native tool calling takes fields out of it)."""
        return plan_tool_calls(
            self.use_native_function_calling,
            lm,
            lm_kwargs,
            signature,
            inputs,
            self.parallel_tool_calls,
        )

    def prepare_lm_kwargs(
        self, lm: Any, lm_kwargs: Mapping[str, Any], signature: type[Signature]
    ) -> dict[str, Any]:
        """The request options for the LM call (JSON mode adds ``response_format``)."""
        return dict(lm_kwargs)

    def __call__(
        self,
        lm: Any,
        lm_kwargs: Mapping[str, Any],
        signature: type[Signature],
        demos: list[Any],
        inputs: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        """Format, call ``lm(messages=..., **lm_kwargs)`` and parse each completion.

        On a parse error the fallback adapter, if any, makes the call once more.
        """
        try:
            kwargs = dict(lm_kwargs)
            prompt_signature = self._plan(lm, kwargs, signature, inputs)
            messages = self.format(prompt_signature, demos, inputs)
            kwargs = self.prepare_lm_kwargs(lm, kwargs, prompt_signature)
            outputs = lm(messages=messages, **kwargs)
            return self._parse_outputs(prompt_signature, outputs, signature)
        except AdapterParseError:
            fallback = self._fallback_adapter()
            if fallback is None:
                raise
            return fallback(lm, lm_kwargs, signature, demos, inputs)

    async def acall(
        self,
        lm: Any,
        lm_kwargs: Mapping[str, Any],
        signature: type[Signature],
        demos: list[Any],
        inputs: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        """Like calling the adapter, with ``await lm.acall(messages=..., **lm_kwargs)``."""
        try:
            kwargs = dict(lm_kwargs)
            prompt_signature = self._plan(lm, kwargs, signature, inputs)
            messages = self.format(prompt_signature, demos, inputs)
            kwargs = self.prepare_lm_kwargs(lm, kwargs, prompt_signature)
            outputs = await lm.acall(messages=messages, **kwargs)
            return self._parse_outputs(prompt_signature, outputs, signature)
        except AdapterParseError:
            fallback = self._fallback_adapter()
            if fallback is None:
                raise
            return await fallback.acall(lm, lm_kwargs, signature, demos, inputs)
