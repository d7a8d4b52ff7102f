"""``Code``, ``Reasoning`` and ``ToolCalls``: text-like custom types, formatted and parsed as in DSPy 3.4.1."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, ClassVar

import json_repair
import pydantic

from dspyq.core.custom_types import Type

_FENCED = re.compile(r"```(?:[^\n]*)\n(.*?)```", re.DOTALL)
_FENCED_INLINE = re.compile(r"```(.*?)```", re.DOTALL)


def _strip_fence(code: str) -> str:
    """The code inside the first markdown code block, or ``code`` when there is none."""
    match = _FENCED.search(code) or _FENCED_INLINE.search(code)
    return match.group(1).strip() if match else code


def _one_text_field(cls: type, data: Any, key: str, kind: str, clean: Any) -> Any:
    """Input of a type with one text field: an instance, the text, or ``{key: text}``."""
    if isinstance(data, cls):
        return data
    if isinstance(data, str):
        return {key: clean(data)}
    if isinstance(data, dict):
        if key not in data:
            raise ValueError(f"`{key}` field is required for `dspy.{kind}`")
        if not isinstance(data[key], str):
            raise ValueError(
                f"`{key}` field must be a string, but received type: {type(data[key])}"
            )
        return {key: clean(data[key])}
    raise ValueError(f"Received invalid value for `dspy.{kind}`: {data}")


class Code(Type):
    """Source code; ``Code["java"]`` names another language (``python`` by default)."""

    code: str
    language: ClassVar[str] = "python"

    def format(self) -> str:
        return f"{self.code}"

    @pydantic.model_serializer()
    def serialize_model(self) -> Any:
        return self.format()

    @classmethod
    def description(cls) -> str:
        return (
            "Code represented in a string, specified in the `code` field. If this is an output "
            "field, the code field should follow the markdown code block format, e.g. \n"
            f"```{cls.language.lower()}\n{{code}}\n```\nProgramming language: {cls.language}"
        )

    @pydantic.model_validator(mode="before")
    @classmethod
    def _validate_input(cls, data: Any) -> Any:
        return _one_text_field(cls, data, "code", "Code", _strip_fence)

    def __class_getitem__(cls, language: Any) -> Any:
        subclass = pydantic.create_model(f"{cls.__name__}_{language}", __base__=cls)
        subclass.language = language
        return subclass


class Reasoning(Type):
    """A model's reasoning: behaves as its ``content`` string (``str()``, ``==``, ``in``, ``+``)."""

    content: str

    def format(self) -> str:
        return f"{self.content}"

    @pydantic.model_validator(mode="before")
    @classmethod
    def _validate_input(cls, data: Any) -> Any:
        return _one_text_field(cls, data, "content", "Reasoning", lambda text: text)

    @classmethod
    def parse_lm_response(cls, response: str | dict[str, Any]) -> Reasoning | None:
        if isinstance(response, dict) and "reasoning_content" in response:
            return Reasoning(content=response["reasoning_content"])
        return None

    def __repr__(self) -> str:
        return f"{self.content!r}"

    def __str__(self) -> str:
        return self.content

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Reasoning):
            return self.content == other.content
        if isinstance(other, str):
            return self.content == other
        return False

    def __hash__(self) -> int:
        return hash(self.content)

    def __len__(self) -> int:
        return len(self.content)

    def __getitem__(self, key: Any) -> str:
        return self.content[key]

    def __contains__(self, item: str) -> bool:
        return item in self.content

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self.content)

    def __add__(self, other: Any) -> Any:
        if isinstance(other, Reasoning):
            return Reasoning(content=self.content + other.content)
        if isinstance(other, str):
            return self.content + other
        return NotImplemented

    def __radd__(self, other: Any) -> Any:
        if isinstance(other, str):
            return other + self.content
        return NotImplemented

    def __getattr__(self, name: str) -> Any:
        if hasattr(str, name):  # str methods (``.strip()``, ``.upper()``) act on the content
            return getattr(self.content, name)
        raise AttributeError(
            f"`{type(self).__name__}` object has no attribute '{name}'. You can convert it to a "
            "string with str(reasoning) or access the content with reasoning.content."
        )


def _is_tool_call(data: dict[str, Any]) -> bool:
    return ("name" in data and ("args" in data or "arguments" in data)) or "function" in data


def normalize_tool_call(data: Any) -> dict[str, Any]:
    """``{"id", "name", "args"}`` from DSPy's shape or a provider's (``function.arguments``)."""
    if not isinstance(data, dict):
        raise ValueError(f"Received invalid tool call value for `dspy.ToolCalls`: {data}")
    if "function" in data:
        function = data.get("function") or {}
        if not isinstance(function, dict):
            raise ValueError(f"Received invalid function value for `dspy.ToolCalls`: {function}")
        arguments = function.get("arguments", {})
        name = function.get("name") or data.get("name")
    else:
        arguments = data.get("args", data.get("arguments", {}))
        name = data.get("name")
    if isinstance(arguments, str):
        arguments = json_repair.loads(arguments)
    elif not isinstance(arguments, dict):
        arguments = {}
    return {"id": data.get("id") or data.get("call_id"), "name": name, "args": arguments}


# No docstrings on the two classes below: pydantic would put them in the JSON schema
# the prompt shows, which must stay DSPy's.
class ToolCall(Type):
    # One call: the tool's ``name`` and its ``args`` (``id`` is the provider's call id).

    id: str | None = None
    name: str
    args: dict[str, Any] = pydantic.Field(json_schema_extra={"additionalProperties": True})

    def format(self) -> dict[str, Any]:  # type: ignore[override]
        return {"name": self.name, "args": self.args}

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        # The LM is not asked for call ids: they are the provider's.
        schema = handler.resolve_ref_schema(
            super().__get_pydantic_json_schema__(core_schema, handler)
        )
        schema.get("properties", {}).pop("id", None)
        if isinstance(schema.get("required"), list):
            schema["required"] = [name for name in schema["required"] if name != "id"]
        return dict(schema)

    def execute(self, functions: dict[str, Any] | list[Any] | None = None) -> Any:
        """Run the named function from ``functions`` (a name map or a list of Tools)."""
        func = None
        if isinstance(functions, dict):
            func = functions.get(self.name)
        elif isinstance(functions, list):
            func = next((tool.func for tool in functions if tool.name == self.name), None)
        if func is None:
            raise ValueError(
                f"Tool function '{self.name}' not found. Please pass the tool functions to the "
                "`execute` method."
            )
        try:
            return func(**(self.args or {}))
        except Exception as exc:
            raise RuntimeError(f"Error executing tool '{self.name}': {exc}") from exc


_Call = ToolCall  # the name ``ToolCall`` is also an attribute of ToolCalls, as in DSPy


class ToolCalls(Type):
    # The tool calls an LM asked for (an output field), natively or written as JSON.

    ToolCall: ClassVar[type[_Call]] = _Call

    tool_calls: list[_Call]
    tool_call_results: Any | None = None

    @classmethod
    def from_dict_list(cls, tool_calls_dicts: list[dict[str, Any]]) -> ToolCalls:
        return cls(tool_calls=[ToolCall(**normalize_tool_call(item)) for item in tool_calls_dicts])

    @classmethod
    def description(cls) -> str:
        return (
            "Tool calls must be a JSON object with `tool_calls`, a list of calls. "
            "Each call must include `name` and `args`. "
            'Example: {"tool_calls": [{"name": "search", "args": {"query": "cats"}}]}'
        )

    def format(self) -> dict[str, Any]:  # type: ignore[override]
        return {"tool_calls": [call.format() for call in self.tool_calls]}

    @pydantic.model_serializer()
    def serialize_model(self) -> Any:
        data = self.format()
        if self.tool_call_results is not None:
            results = self.tool_call_results
            data["tool_call_results"] = pydantic.TypeAdapter(type(results)).dump_python(
                results, mode="json"
            )
        return data

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler.resolve_ref_schema(
            super().__get_pydantic_json_schema__(core_schema, handler)
        )
        schema.get("properties", {}).pop("tool_call_results", None)
        return dict(schema)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _validate_input(cls, data: Any) -> Any:
        if isinstance(data, cls):
            return data
        if isinstance(data, list) and all(isinstance(i, dict) and _is_tool_call(i) for i in data):
            return {"tool_calls": [ToolCall(**normalize_tool_call(item)) for item in data]}
        if isinstance(data, dict):
            calls = data.get("tool_calls")
            if isinstance(calls, list):
                normalized: dict[str, Any] = {
                    "tool_calls": [
                        ToolCall(**normalize_tool_call(i)) if isinstance(i, dict) else i
                        for i in calls
                    ]
                }
                if "tool_call_results" in data:
                    normalized["tool_call_results"] = data["tool_call_results"]
                return normalized
            if "tool_calls" not in data and _is_tool_call(data):
                return {"tool_calls": [ToolCall(**normalize_tool_call(data))]}
        raise ValueError(f"Received invalid value for `dspy.ToolCalls`: {data}")
