"""What the fake LM server answers: completions that DSPy-style adapters can parse.

The fake reads the prompt the way a careful model would: the output fields and their
types from the system message (``Your output fields are: 1. `answer` (int): ...``),
the answer format from the last user message ("Respond with a JSON object" means
JSON, otherwise DSPy's ``[[ ## field ## ]]`` chat format), and fills each field with
a deterministic placeholder of the right type, or with values a test scripted.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

_FIELD_LINE = re.compile(r"^\d+\. `(\w+)` \((.*)$")
_NOTE = re.compile(r"^\{(\w+)\}\s+# note: the value you produce (.*)$", re.DOTALL)
_CONSTRAINT = re.compile(
    r"(greater than or equal to|greater than|less than or equal to|less than): ([-\d.]+)"
)
_INPUT_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]\n")


@dataclass
class OutputField:
    """One output field the prompt asks for."""

    name: str
    type: str
    note: str = ""
    constraints: str = ""


def message_text(content: Any) -> str:
    """The text of a message's content (a string or a list of OpenAI/Anthropic parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and "text" in part
        )
    return "" if content is None else str(content)


def estimate_tokens(text: str) -> int:
    """A deterministic token count: about four characters per token."""
    return (len(text) + 3) // 4 if text else 0


def _split_type(rest: str) -> tuple[str, str]:
    """From ``int): desc`` return ``("int", "desc")``, balancing brackets inside the type."""
    depth = 0
    for i, ch in enumerate(rest):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0 and ch == ")":
                return rest[:i], rest[i + 1 :].removeprefix(":").strip()
            depth -= 1
    return rest, ""


def _notes(system: str) -> dict[str, str]:
    """Per-field notes from either format's structure section."""
    notes: dict[str, str] = {}
    for line in system.splitlines():
        match = _NOTE.match(line.strip())
        if match:
            notes[match.group(1)] = match.group(2)
    marker = "Outputs will be a JSON object with the following fields."
    if marker in system:
        tail = system[system.index(marker) + len(marker) :]
        start = tail.find("{")
        if start >= 0:
            try:
                shape, _ = json.JSONDecoder().raw_decode(tail[start:])
            except ValueError:
                shape = {}
            for name, value in shape.items() if isinstance(shape, dict) else []:
                match = _NOTE.match(str(value))
                if match:
                    notes[name] = match.group(2)
    return notes


def parse_output_fields(system: str) -> list[OutputField]:
    """The output fields a DSPy-style system message declares (empty if none)."""
    lines = system.splitlines()
    try:
        start = lines.index("Your output fields are:")
    except ValueError:
        return []
    fields: list[OutputField] = []
    for line in lines[start + 1 :]:
        if line.startswith("All interactions will be structured"):
            break
        match = _FIELD_LINE.match(line)
        if match:
            type_, _desc = _split_type(match.group(2))
            fields.append(OutputField(name=match.group(1), type=type_.strip()))
        elif line.startswith("Constraints:") and fields:
            fields[-1].constraints += line
    notes = _notes(system)
    for f in fields:
        f.note = notes.get(f.name, "")
    return fields


def question_snippet(messages: list[dict[str, Any]]) -> str:
    """A short, deterministic summary of the last user message (its first input value)."""
    users = [message_text(m.get("content")) for m in messages if m.get("role") == "user"]
    text = users[-1] if users else ""
    match = _INPUT_HEADER.search(text)
    if match:
        text = text[match.end() :]
        text = re.split(r"\n\n(?:\[\[ ## |Respond with )", text, maxsplit=1)[0]
    text = " ".join(text.split())
    return text[:60] or "the question"


def _top_level_split(text: str, sep: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts]


def schema_value(schema: Any, defs: dict[str, Any]) -> Any:
    if not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        return schema_value(defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {}), defs)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [
                o for o in schema[key] if not (isinstance(o, dict) and o.get("type") == "null")
            ]
            return schema_value(options[0] if options else {}, defs)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: schema_value(sub, defs) for name, sub in props.items()}
    if kind == "array":
        return []
    if kind == "integer":
        return int(schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1))
    if kind == "number":
        return float(schema.get("minimum", 0.0))
    if kind == "boolean":
        return True
    if kind == "string":
        return "fake"
    return None


def _bounded(value: float, constraints: str) -> float:
    for kind, raw in _CONSTRAINT.findall(constraints):
        bound = float(raw)
        if kind == "greater than or equal to":
            value = max(value, bound)
        elif kind == "greater than":
            value = max(value, bound + 1)
        elif kind == "less than or equal to":
            value = min(value, bound)
        else:
            value = min(value, bound - 1)
    return value


def placeholder(field: OutputField, snippet: str) -> Any:
    """A value of the field's type: str text, 0, 0.0, True, [], {}, a Literal's first option."""
    type_ = field.type
    optional = re.fullmatch(r"(?:Optional|Union)\[(.*)\]", type_)
    if optional:
        type_ = _top_level_split(optional.group(1), ",")[0]
    if "|" in type_:
        type_ = next(
            (t for t in _top_level_split(type_, "|") if t not in ("None", "NoneType")), "str"
        )
    base = type_.split("[", 1)[0].strip()
    if base == "str":
        return f"fake {field.name}: {snippet}"
    if base == "int":
        return int(_bounded(0, field.constraints))
    if base == "float":
        return float(_bounded(0.0, field.constraints))
    if base == "bool":
        return True
    if base == "Literal":
        try:
            options = ast.literal_eval("(" + type_[len("Literal[") : -1] + ",)")
            return options[0]
        except (ValueError, SyntaxError, IndexError):
            pass
    if base in ("list", "List", "tuple", "Tuple", "set", "Set", "Sequence", "frozenset"):
        return []
    if base in ("dict", "Dict", "Mapping"):
        return {}
    note = field.note
    for prefix in ("must exactly match (no extra characters) one of: ", "must be one of: "):
        if note.startswith(prefix):
            return note[len(prefix) :].split(";")[0].strip()
    schema_prefix = "must adhere to the JSON schema: "
    if note.startswith(schema_prefix):
        try:
            schema = json.loads(note[len(schema_prefix) :])
            return schema_value(schema, schema.get("$defs", {}))
        except ValueError:
            pass
    return f"fake {field.name}: {snippet}"


def wants_json(messages: list[dict[str, Any]], response_format: Any = None) -> bool:
    """Whether the prompt asked for a JSON object (JSON adapter, or a JSON response_format)."""
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        return True
    users = [message_text(m.get("content")) for m in messages if m.get("role") == "user"]
    return bool(users) and "Respond with a JSON object" in users[-1]


def _chat_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False)


def render_fields(values: dict[str, Any], as_json: bool) -> str:
    """Field values as a JSON object, or in DSPy's chat format ending with ``completed``."""
    if as_json:
        return json.dumps(values, ensure_ascii=False)
    blocks = [f"[[ ## {name} ## ]]\n{_chat_value(value)}" for name, value in values.items()]
    return "\n\n".join([*blocks, "[[ ## completed ## ]]"])


def _response_schema(response_format: Any) -> dict[str, Any] | None:
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema") or {}
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else None


def system_text(messages: list[dict[str, Any]]) -> str:
    return "\n\n".join(
        message_text(m.get("content")) for m in messages if m.get("role") == "system"
    )


def field_completion(
    messages: list[dict[str, Any]], given: dict[str, Any] | None, response_format: Any = None
) -> str:
    """A completion carrying ``given`` values, with the prompt's other fields defaulted.

    Fields come out in the prompt's order; given names the prompt does not declare follow.
    With no declared fields and nothing given, a plain-text answer is returned, or a
    value of the ``json_schema`` response format's schema.
    """
    given = dict(given or {})
    fields = parse_output_fields(system_text(messages))
    snippet = question_snippet(messages)
    if not fields and not given:
        schema = _response_schema(response_format)
        if schema is not None:
            return json.dumps(schema_value(schema, schema.get("$defs", {})))
        return f"fake answer: {snippet}"
    values: dict[str, Any] = {}
    for f in fields:
        values[f.name] = given.pop(f.name) if f.name in given else placeholder(f, snippet)
    values.update(given)
    return render_fields(values, wants_json(messages, response_format))
