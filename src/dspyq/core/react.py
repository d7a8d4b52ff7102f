"""ReAct: an agent loop of thought, tool call and observation, then answer extraction.

Mirrors ``dspy.ReAct`` of DSPy 3.4.1: each turn a ``Predict`` chooses ``next_thought``,
``next_tool_name`` and ``next_tool_args``; the tool's result (or its error) becomes the
turn's observation; the built-in ``finish`` tool ends the loop, and a ChainOfThought
reads the whole trajectory to produce the signature's outputs.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from collections.abc import Callable
from typing import Any, Literal, get_type_hints

from pydantic import TypeAdapter, ValidationError, create_model
from pydantic_core import core_schema

from dspyq.core.callbacks import with_callbacks
from dspyq.core.chain_of_thought import ChainOfThought
from dspyq.core.context import current
from dspyq.core.example import Prediction
from dspyq.core.module import Module
from dspyq.core.predict import Predict, ensure_signature
from dspyq.core.signature import InputField, OutputField, Signature, make_signature
from dspyq.errors import AdapterParseError, ContextWindowExceededError, ToolError

logger = logging.getLogger(__name__)

_TRUNCATION_ATTEMPTS = 3


def _refuse_uncallable(func: Any) -> None:
    """Raise the pydantic ValidationError DSPy's Tool model raises: same class, same text."""
    create_model("Tool", func=(Callable[..., Any], ...)).model_validate({"func": func})


class Tool:
    """A callable the agent may use, described to the LM by name, docstring and args.

    ``args`` maps each parameter to its JSON schema (from the type hints); the
    description is the function's docstring unless ``desc`` is given.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        name: str | None = None,
        desc: str | None = None,
        args: dict[str, Any] | None = None,
        arg_types: dict[str, Any] | None = None,
        arg_desc: dict[str, str] | None = None,
    ) -> None:
        if not callable(func):
            _refuse_uncallable(func)
        self.func = func
        target = func if inspect.isfunction(func) or inspect.ismethod(func) else type(func).__call__
        self.name: str = name or str(getattr(func, "__name__", type(func).__name__))
        self.desc: str | None = desc if desc is not None else (func.__doc__ or target.__doc__)
        self.has_kwargs = False
        parsed_args, parsed_types = self._describe_parameters(target, arg_desc or {})
        self.args: dict[str, Any] = parsed_args if args is None else args
        self.arg_types: dict[str, Any] = parsed_types if arg_types is None else arg_types
        self.arg_desc = arg_desc or {}

    def _describe_parameters(
        self, target: Callable[..., Any], arg_desc: dict[str, str]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            parameters = inspect.signature(target).parameters
        except (TypeError, ValueError):
            return {}, {}
        try:
            hints = get_type_hints(target)
        except Exception:
            hints = {}
        args: dict[str, Any] = {}
        types: dict[str, Any] = {}
        for param_name, param in parameters.items():
            if param_name == "self" and target is type(self.func).__call__:
                continue
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                self.has_kwargs = True
                continue
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            annotation = hints.get(param_name, Any)
            types[param_name] = annotation
            schema = _inline_refs(TypeAdapter(annotation).json_schema())
            if param.default is not inspect.Parameter.empty:
                schema["default"] = param.default
            if param_name in arg_desc:
                schema["description"] = arg_desc[param_name]
            args[param_name] = schema
        return args, types

    def _parse_args(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        parsed: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key not in self.args and key not in self.arg_types:
                if self.has_kwargs:
                    parsed[key] = value
                    continue
                raise ToolError(
                    f"Arg {key} is not in the tool's args.",
                    context={"tool": self.name, "args": list(self.args)},
                )
            annotation = self.arg_types.get(key, Any)
            try:
                parsed[key] = TypeAdapter(annotation).validate_python(value)
            except ValidationError as exc:
                raise ToolError(
                    f"Arg {key} of tool {self.name} is invalid: {exc.errors()[0]['msg']}",
                    context={"tool": self.name, "arg": key},
                ) from exc
        return parsed

    @with_callbacks
    def __call__(self, **kwargs: Any) -> Any:
        result = self.func(**self._parse_args(kwargs))
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise ToolError(
                f"Tool {self.name} is async; call it with `await tool.acall(...)` "
                "(or run the program with `acall`).",
                context={"tool": self.name},
            )
        return result

    @with_callbacks
    async def acall(self, **kwargs: Any) -> Any:
        parsed = self._parse_args(kwargs)
        if _is_async(self.func):
            return await self.func(**parsed)
        result = await asyncio.to_thread(self.func, **parsed)
        if inspect.isawaitable(result):
            return await result
        return result

    def __str__(self) -> str:
        described = (
            f", whose description is <desc>{self.desc}</desc>.".replace("\n", "  ")
            if self.desc
            else "."
        )
        return f"{self.name}{described} It takes arguments {self.args}."

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r}, desc={self.desc!r}, args={self.args!r})"

    @classmethod
    def from_mcp_tool(cls, session: Any, tool: Any, *, result_mode: str = "text") -> Tool:
        """A Tool calling ``tool`` on an MCP ``session`` (see :mod:`dspyq.core.mcp_tools`)."""
        from dspyq.core.mcp_tools import mcp_tool_parts

        return cls(**mcp_tool_parts(session, tool, result_mode))

    def format_as_litellm_function_call(self) -> dict[str, Any]:
        """The tool in OpenAI's ``tools`` form (what native function calling sends)."""
        required = [name for name, schema in self.args.items() if "default" not in schema]
        parameters = {"type": "object", "properties": self.args, "required": required}
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.desc, "parameters": parameters},
        }

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        # Usable as a field type (``tools: list[Tool]``); shown in prompts by its str().
        return core_schema.is_instance_schema(
            cls, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )


def _is_async(func: Callable[..., Any]) -> bool:
    """True for coroutine functions and for instances whose ``__call__`` is one."""
    if inspect.isfunction(func) or inspect.ismethod(func):
        return inspect.iscoroutinefunction(func)
    return inspect.iscoroutinefunction(type(func).__call__)


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace ``$ref``s with their ``$defs`` so each arg schema stands alone."""
    defs = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.split("/")[-1]])
            return {key: resolve(value) for key, value in node.items() if key != "$defs"}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def _finish() -> str:
    return "Completed."


def _format_error(error: BaseException, limit: int = 5) -> str:
    """An exception with its innermost frames, as the agent sees it in the observation."""
    lines = traceback.format_exception(type(error), error, error.__traceback__, limit=limit)
    return "\n" + "".join(lines).strip()


class ReAct(Module):
    """An agent that calls ``tools`` until it can produce the signature's outputs."""

    def __init__(
        self,
        signature: str | type[Signature],
        tools: list[Callable[..., Any] | Tool],
        max_iters: int = 20,
    ) -> None:
        super().__init__()
        self.signature = signature = ensure_signature(signature)
        self.max_iters = max_iters

        wrapped = [tool if isinstance(tool, Tool) else Tool(tool) for tool in tools]
        tool_map: dict[str, Tool] = {tool.name: tool for tool in wrapped}
        inputs = ", ".join(f"`{name}`" for name in signature.input_fields)
        outputs = ", ".join(f"`{name}`" for name in signature.output_fields)
        tool_map["finish"] = Tool(
            func=_finish,
            name="finish",
            desc=(
                "Marks the task as complete. That is, signals that all information for "
                f"producing the outputs, i.e. {outputs}, are now available to be extracted."
            ),
            args={},
        )
        self.tools = tool_map

        instructions = [f"{signature.instructions}\n"] if signature.instructions else []
        instructions += [
            f"You are an Agent. In each episode, you will be given the fields {inputs} as "
            "input. And you can see your past trajectory so far.",
            "Your goal is to use one or more of the supplied tools to collect any necessary "
            f"information for producing {outputs}.\n",
            "To do this, you will interleave next_thought, next_tool_name, and next_tool_args "
            "in each turn, and also when finishing the task.",
            "After each tool call, you receive a resulting observation, which gets appended "
            "to your trajectory.\n",
            "When writing next_thought, you may reason about the current situation and plan "
            "for future steps.",
            "When selecting the next_tool_name and its next_tool_args, the tool must be one of:\n",
        ]
        instructions += [f"({index + 1}) {tool}" for index, tool in enumerate(tool_map.values())]
        instructions.append(
            "When providing `next_tool_args`, the value inside the field must be in JSON format"
        )

        react_signature = signature.with_instructions("\n".join(instructions))
        for output_name in signature.output_fields:
            react_signature = react_signature.delete(output_name)
        tool_names: Any = Literal[tuple(tool_map)]
        react_signature = (
            react_signature.append("trajectory", InputField(), type_=str)
            .append("next_thought", OutputField(), type_=str)
            .append("next_tool_name", OutputField(), type_=tool_names)
            .append("next_tool_args", OutputField(), type_=dict[str, Any])
        )
        extract_signature = signature.append("trajectory", InputField(), type_=str)

        self.react = Predict(react_signature)
        self.extract = ChainOfThought(extract_signature)

    # --- trajectory -----------------------------------------------------------------

    def _format_trajectory(self, trajectory: dict[str, Any]) -> str:
        from dspyq.adapters import ChatAdapter

        adapter = current().adapter or ChatAdapter()
        fields = ", ".join(trajectory)
        trajectory_signature = make_signature(f"{fields} -> x")
        text: str = adapter.format_user_message_content(trajectory_signature, trajectory)
        return text

    def truncate_trajectory(self, trajectory: dict[str, Any]) -> dict[str, Any]:
        """Drop the oldest tool call so the prompt fits the context window.

        Override to truncate differently.
        """
        keys = list(trajectory)
        if len(keys) < 4:
            raise ContextWindowExceededError(
                "The trajectory is too long so your prompt exceeded the context window, but "
                "the trajectory cannot be truncated because it only has one tool call."
            )
        for key in keys[:4]:
            trajectory.pop(key)
        return trajectory

    def _call_with_truncation(
        self, module: Module, trajectory: dict[str, Any], **input_args: Any
    ) -> Any:
        for _ in range(_TRUNCATION_ATTEMPTS):
            try:
                return module(**input_args, trajectory=self._format_trajectory(trajectory))
            except ContextWindowExceededError:
                logger.warning(
                    "Trajectory exceeded the context window, truncating the oldest tool call."
                )
                trajectory = self.truncate_trajectory(trajectory)
        raise ContextWindowExceededError(
            f"The context window was exceeded even after {_TRUNCATION_ATTEMPTS} attempts to "
            "truncate the trajectory."
        )

    async def _acall_with_truncation(
        self, module: Module, trajectory: dict[str, Any], **input_args: Any
    ) -> Any:
        for _ in range(_TRUNCATION_ATTEMPTS):
            try:
                return await module.acall(
                    **input_args, trajectory=self._format_trajectory(trajectory)
                )
            except ContextWindowExceededError:
                logger.warning(
                    "Trajectory exceeded the context window, truncating the oldest tool call."
                )
                trajectory = self.truncate_trajectory(trajectory)
        raise ContextWindowExceededError(
            f"The context window was exceeded even after {_TRUNCATION_ATTEMPTS} attempts to "
            "truncate the trajectory."
        )

    # --- the loop -------------------------------------------------------------------

    def _record_step(
        self, trajectory: dict[str, Any], index: int, step: Prediction
    ) -> tuple[str, dict[str, Any]]:
        trajectory[f"thought_{index}"] = step.next_thought
        trajectory[f"tool_name_{index}"] = step.next_tool_name
        trajectory[f"tool_args_{index}"] = step.next_tool_args
        args = step.next_tool_args if isinstance(step.next_tool_args, dict) else {}
        return step.next_tool_name, args

    def _tool_failed(self, tool_name: str, error: Exception) -> str:
        logger.warning("ReAct tool %r failed: %s", tool_name, error)
        return f"Execution error in {tool_name}: {_format_error(error)}"

    def forward(self, **input_args: Any) -> Prediction:
        trajectory: dict[str, Any] = {}
        max_iters = input_args.pop("max_iters", self.max_iters)
        for index in range(max_iters):
            try:
                step = self._call_with_truncation(self.react, trajectory, **input_args)
            except AdapterParseError as error:
                logger.warning(
                    "Ending the trajectory: agent failed to select a valid tool: %s", error
                )
                break
            tool_name, args = self._record_step(trajectory, index, step)
            try:
                trajectory[f"observation_{index}"] = self.tools[tool_name](**args)
            except Exception as error:
                trajectory[f"observation_{index}"] = self._tool_failed(tool_name, error)
            if tool_name == "finish":
                break
        extract = self._call_with_truncation(self.extract, trajectory, **input_args)
        return Prediction(trajectory=trajectory, **extract)

    async def aforward(self, **input_args: Any) -> Prediction:
        trajectory: dict[str, Any] = {}
        max_iters = input_args.pop("max_iters", self.max_iters)
        for index in range(max_iters):
            try:
                step = await self._acall_with_truncation(self.react, trajectory, **input_args)
            except AdapterParseError as error:
                logger.warning(
                    "Ending the trajectory: agent failed to select a valid tool: %s", error
                )
                break
            tool_name, args = self._record_step(trajectory, index, step)
            try:
                trajectory[f"observation_{index}"] = await self.tools[tool_name].acall(**args)
            except Exception as error:
                trajectory[f"observation_{index}"] = self._tool_failed(tool_name, error)
            if tool_name == "finish":
                break
        extract = await self._acall_with_truncation(self.extract, trajectory, **input_args)
        return Prediction(trajectory=trajectory, **extract)
