"""Native function calling, as DSPy 3.4.1's adapters do it.

With ``use_native_function_calling`` on (JSONAdapter's default; ChatAdapter's is off), a
signature with a ``list[Tool]`` (or ``Tool``) input and a ``ToolCalls`` output sends the
tools as the request's ``tools`` and leaves both fields out of the prompt; the calls the
LM answers with (``tool_calls`` on the response) become the ``ToolCalls`` value. Off, the
request's ``tools``/``tool_choice``/``parallel_tool_calls`` are dropped and the calls are
read from the completion's text like any other field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args, get_origin

from dspyq.core.react import Tool
from dspyq.core.signature import Signature
from dspyq.core.text_types import Reasoning, ToolCalls

_TOOL_KEYS = ("tools", "tool_choice", "parallel_tool_calls")


def tools_input_name(signature: type[Signature]) -> str | None:
    for name, field in signature.input_fields.items():
        annotation = field.annotation
        if annotation is Tool or (
            get_origin(annotation) is list and get_args(annotation)[:1] == (Tool,)
        ):
            return name
    return None


def tool_calls_output_name(signature: type[Signature]) -> str | None:
    return next((n for n, f in signature.output_fields.items() if f.annotation is ToolCalls), None)


def plan_tool_calls(
    native: bool,
    lm: Any,
    lm_kwargs: dict[str, Any],
    signature: type[Signature],
    inputs: Mapping[str, Any],
    parallel_tool_calls: bool | None = None,
) -> type[Signature]:
    """The signature the prompt is built from; ``lm_kwargs`` gains (or loses) ``tools``."""
    if not native:
        for key in _TOOL_KEYS:
            lm_kwargs.pop(key, None)
        return signature
    tools_name = tools_input_name(signature)
    calls_name = tool_calls_output_name(signature)
    if calls_name and tools_name is None:
        raise ValueError(  # DSPy's error class
            f"You provided an output field {calls_name} to receive the tool calls information, "
            "but did not provide any tools as the input. Please provide a list of tools as the "
            "input by adding an input field with type `list[dspy.Tool]`."
        )
    if calls_name and tools_name and getattr(lm, "supports_function_calling", True):
        tools = inputs[tools_name]
        tools = tools if isinstance(tools, list) else [tools]
        lm_kwargs["tools"] = [tool.format_as_litellm_function_call() for tool in tools]
        if parallel_tool_calls is not None and lm_kwargs.get("parallel_tool_calls") is None:
            lm_kwargs["parallel_tool_calls"] = parallel_tool_calls
        if lm_kwargs.get("parallel_tool_calls") is not None:
            lm_kwargs.setdefault("tool_choice", "auto")
        return signature.delete(calls_name).delete(tools_name)
    if calls_name:
        for key in _TOOL_KEYS:
            lm_kwargs.pop(key, None)
    return signature


def native_tool_calls(
    output: Any, signature: type[Signature]
) -> tuple[str | None, ToolCalls | None]:
    """(output field name, the calls) when ``output`` carries native calls for ``signature``."""
    calls = output.get("tool_calls") if isinstance(output, Mapping) else None
    name = tool_calls_output_name(signature)
    if not calls or name is None:
        return None, None
    return name, ToolCalls.model_validate(list(calls))


def native_reasoning(output: Any, signature: type[Signature]) -> dict[str, Reasoning]:
    """``Reasoning`` outputs filled from the response's ``reasoning_content``, as DSPy does."""
    if not isinstance(output, Mapping):
        return {}
    found = Reasoning.parse_lm_response(dict(output))
    if found is None:
        return {}
    return {n: found for n, f in signature.output_fields.items() if f.annotation is Reasoning}
