"""Tools from an MCP server: ``Tool.from_mcp_tool(session, tool)``, as DSPy 3.4.1 builds them.

Needs no ``mcp`` package: ``tool`` is anything with ``name``, ``description`` and
``inputSchema`` (or ``input_schema``), ``session`` anything with an async
``call_tool(name, arguments=...)``, as ``mcp.ClientSession`` has.
"""

from __future__ import annotations

from typing import Any, Literal

_JSON_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list,
    "object": dict,
}


def _field(obj: Any, snake: str, camel: str, default: Any = None) -> Any:
    """A field whose name differs between mcp SDK versions."""
    for name in (snake, camel):
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


def _was_set(obj: Any, snake: str, camel: str) -> bool:
    fields_set = getattr(obj, "model_fields_set", None)
    if fields_set is not None:
        return snake in fields_set or camel in fields_set
    return hasattr(obj, snake) or hasattr(obj, camel)


def _inline_defs(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].split("/")[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(prop)
    return resolved


def schema_to_tool_args(
    schema: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(args, arg_types, arg_desc) of a Tool from a JSON schema of its input."""
    args: dict[str, Any] = {}
    arg_types: dict[str, Any] = {}
    arg_desc: dict[str, str] = {}
    properties = schema.get("properties")
    if properties is None:
        return args, arg_types, arg_desc
    required = schema.get("required", [])
    defs = schema.get("$defs", {})
    for name, prop in properties.items():
        prop = _inline_defs(prop, defs) if defs else prop
        args[name] = prop
        arg_types[name] = _JSON_TYPES.get(str(prop.get("type")), Any)
        arg_desc[name] = prop.get("description", "No description provided.")
        if name in required:
            arg_desc[name] += " (Required)"
    return args, arg_types, arg_desc


def tool_result(result: Any, result_mode: Literal["text", "structured"] = "text") -> Any:
    """An MCP ``CallToolResult`` as the value the agent sees (one text: that text)."""
    texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    others = [c for c in result.content if getattr(c, "type", None) != "text"]
    content: Any = texts[0] if len(texts) == 1 else texts
    if _field(result, "is_error", "isError", default=False):
        raise RuntimeError(f"Failed to call a MCP tool: {content}")
    if result_mode == "structured" and _was_set(result, "structured_content", "structuredContent"):
        return _field(result, "structured_content", "structuredContent")
    return content or others


def mcp_tool_parts(session: Any, tool: Any, result_mode: str) -> dict[str, Any]:
    """The keyword arguments of the Tool wrapping ``tool`` on ``session``."""
    if result_mode not in ("text", "structured"):
        raise ValueError(f"Unsupported MCP result mode: {result_mode!r}")
    schema = _field(tool, "input_schema", "inputSchema", default={}) or {}
    args, arg_types, arg_desc = schema_to_tool_args(schema)

    async def call(*_args: Any, **kwargs: Any) -> Any:
        result = await session.call_tool(tool.name, arguments=kwargs)
        return tool_result(result, result_mode)  # type: ignore[arg-type]

    return {
        "func": call,
        "name": tool.name,
        "desc": tool.description,
        "args": args,
        "arg_types": arg_types,
        "arg_desc": arg_desc,
    }
