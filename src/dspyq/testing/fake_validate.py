"""What the fake server refuses with a 400 (or 404), worded as the providers word it.

Each check returns a :class:`Refusal` or None; the first refusal wins. Shapes checked:
the body, the model (against the configured list, if any), messages or input,
``max_tokens``, ``temperature``, ``tools`` and ``tool_choice``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dspyq.testing import fake_responses


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    param: str | None = None
    code: str | None = None


def _number_error(name: str, value: Any, top: float, anthropic: bool) -> Refusal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return Refusal(400, f"Invalid type for '{name}': expected a decimal.", name, "invalid_type")
    if anthropic and not 0 <= value <= top:
        return Refusal(400, f"{name}: range: 0..{top:g}", name)
    if value < 0:
        message = f"Invalid '{name}': decimal below minimum value. Expected a value >= 0, but got {value} instead."
        return Refusal(400, message, name, "decimal_below_min_value")
    if value > top:
        message = f"Invalid '{name}': decimal above maximum value. Expected a value <= {top:g}, but got {value} instead."
        return Refusal(400, message, name, "decimal_above_max_value")
    return None


def _max_tokens_error(body: dict[str, Any], protocol: str) -> Refusal | None:
    names = {"anthropic": ["max_tokens"], "responses": ["max_output_tokens"]}.get(
        protocol, ["max_tokens", "max_completion_tokens"]
    )
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            return Refusal(400, f"{name}: Input should be a valid integer", name, "invalid_type")
        if value < 1:
            message = f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got {value} instead."
            return Refusal(400, message, name, "integer_below_min_value")
    return None


def tool_name(tool: Any, protocol: str) -> str | None:
    """The name a tool definition declares, or None when it is malformed."""
    if not isinstance(tool, dict):
        return None
    if protocol == "openai":
        function = tool.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        return name if tool.get("type") == "function" and isinstance(name, str) else None
    name = tool.get("name")
    return name if isinstance(name, str) and name else None


def chosen_tool(choice: Any) -> str | None:
    """The tool a ``tool_choice`` names, in any of the three protocols' forms."""
    if not isinstance(choice, dict):
        return None
    function = choice.get("function")
    if isinstance(function, dict):
        return str(function.get("name"))
    name = choice.get("name")
    return str(name) if name is not None else None


def _tools_error(body: dict[str, Any], protocol: str) -> Refusal | None:
    tools = body.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list):
        return Refusal(400, "Invalid type for 'tools': expected an array.", "tools", "invalid_type")
    names = []
    for i, tool in enumerate(tools):
        name = tool_name(tool, protocol)
        if name is None:
            return Refusal(
                400,
                f"Invalid 'tools[{i}]': a function tool with a name is required.",
                f"tools[{i}]",
            )
        names.append(name)
    wanted = chosen_tool(body.get("tool_choice"))
    if wanted is not None and wanted not in names:
        message = f"Tool choice '{wanted}' not found in 'tools' parameter."
        return Refusal(400, message, "tool_choice")
    return None


def refusal(
    body: Any,
    protocol: str,
    headers: dict[str, str],
    models: list[str] | None,
    finetuned: frozenset[str] | set[str] = frozenset(),
) -> Refusal | None:
    """Why the real service would refuse this request, or None. A fine-tuned model
    (``ft:...``) exists only once its job has succeeded (``finetuned``)."""
    if not isinstance(body, dict):
        return Refusal(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return Refusal(400, "model: field required", "model")
    if protocol == "responses":
        missing = fake_responses.validate(body)
        if missing:
            return Refusal(400, missing, "input", "missing_required_parameter")
    else:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return Refusal(400, "messages: a non-empty list is required", "messages")
        if not messages:
            if protocol == "anthropic":
                return Refusal(400, "messages: at least one message is required", "messages")
            message = "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead."
            return Refusal(400, message, "messages", "empty_array")
    if protocol == "anthropic":
        if "anthropic-version" not in headers:
            return Refusal(400, "anthropic-version: header is required")
        if not isinstance(body.get("max_tokens"), int):
            return Refusal(400, "max_tokens: field required", "max_tokens")
        messages = body["messages"]
        if any(m.get("role") == "system" for m in messages if isinstance(m, dict)):
            return Refusal(
                400, 'messages: Unexpected role "system". Use the top-level system parameter.'
            )
    anthropic = protocol == "anthropic"
    problem = (
        _max_tokens_error(body, protocol)
        or _number_error(
            "temperature", body.get("temperature"), 1.0 if anthropic else 2.0, anthropic
        )
        or _number_error("top_p", body.get("top_p"), 1.0, anthropic)
        or _tools_error(body, protocol)
    )
    if problem:
        return problem
    known = model in finetuned or (
        not model.startswith("ft:") and (models is None or model in models)
    )
    if not known:
        if anthropic:
            return Refusal(404, f"model: {model}")
        message = f"The model `{model}` does not exist or you do not have access to it."
        return Refusal(404, message, None, "model_not_found")
    return None
