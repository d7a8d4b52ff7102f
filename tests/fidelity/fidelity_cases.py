"""Hypothesis strategies for differential cases, described as JSON so both sides build them alike.

A case::

    {"types": {"Color": {"kind": "enum", ...}, "Item": {"kind": "model", ...}},
     "signature": {"kind": "string", "text": "q: int -> a", "instructions": None}
                | {"kind": "class", "doc": "...", "fields": [{"name", "io", "type", "desc",
                   "prefix", "constraints", "default"}]},
     "module": "predict" | "cot", "adapter": "chat" | "json" | "xml" | "twostep",
     "demos": [{...}], "inputs": {...}, "completions": ["..."],
     "extraction": ["..."]}  # TwoStepAdapter only: the extraction model's completions

Values use small tags for what JSON cannot say: ``{"$model": "Item", "v": {...}}``,
``{"$enum": "Color", "v": "red"}``, ``{"$tuple": [...]}``, ``{"$history": [...]}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

AWKWARD_TEXT = [
    "",
    "hello",
    "héllo wörld ✓ 🙂",
    "line one\r\nline two",
    "two\nlines",
    "[[ ## answer ## ]]",
    "before [[ ## completed ## ]] after",
    "«quoted» text",
    "  padded  ",
    '{"k": 1}',
    "None",
    "True",
    "3",
    "it's",
    'say "hi"',
    "tab\there",
]

text_values = st.one_of(
    st.sampled_from(AWKWARD_TEXT),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
)
ints = st.integers(min_value=-1000, max_value=1000)
floats = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda x: round(x, 3)),
    st.sampled_from([0.5, 1.0, -2.25]),
)
FIELD_NAMES = [
    "question",
    "answer",
    "context",
    "search_query",
    "camelCaseText",
    "text2number",
    "x",
    "score",
    "größe",
    "items",
    "label",
    "notes",
    "count",
    "ok",
    "choice",
    "passages",
]


# String signatures at the edges of the grammar, valid and not (see dspy-format-notes.md §3).
ODD_SPECS = [
    "question",
    "a -> b -> c",
    "answer -> answer",
    "a, b -> b",
    "-> answer",
    "question ->",
    "->",
    "question, -> answer",
    "my-field -> y",
    "1x -> y",
    "class -> y",
    "q -> a # comment",
    "x: MyType -> y",
    "x: 'str' -> y",
    "x: 3 -> y",
    "x: os.path -> y",
    "x = 3 -> y",
    "x: int = 3 -> y",
    "*args -> y",
    "x, *, y -> z",
    "a, a -> b",
    "x: Optional[int] -> y: int | None",
    "x: None | int -> y: str | float",
    "h: dspy.History, q -> a",
    "h: History -> a",
    "x: list[Item] -> y: Optional[Color]",
    "x: Tuple[int, ...] -> y: Dict[str, List[int]]",
    "x: NoneType -> y",
    "x: Field(ge=1) -> y",
    "question:str->answer:int",
    "  spaced ,\n newline -> out  ",
]


@dataclass(frozen=True)
class FieldType:
    """A field type: its expression, how to draw values, how to write a value as LM text."""

    expr: str
    values: st.SearchStrategy[Any]
    input_only: bool = False


opaque_values = text_values.map(lambda text: {"$opaque": text})
item_values = st.builds(
    lambda name, qty, tags: {"$model": "Item", "v": {"name": name, "qty": qty, "tags": tags}},
    text_values,
    st.integers(0, 9),
    st.lists(st.sampled_from(["a", "b", "ü"]), max_size=2),
)
history_values = st.lists(
    st.dictionaries(st.sampled_from(FIELD_NAMES[:6]), text_values, min_size=0, max_size=3),
    max_size=3,
).map(lambda turns: {"$history": turns})

TYPES: list[FieldType] = [
    FieldType("str", text_values),
    FieldType("str", text_values),
    FieldType("int", ints),
    FieldType("float", floats),
    FieldType("bool", st.booleans()),
    FieldType("list[str]", st.lists(text_values, max_size=3)),
    FieldType("list[int]", st.lists(ints, max_size=3)),
    FieldType(
        "dict[str, int]", st.dictionaries(st.sampled_from(["b", "a", "ä", "z"]), ints, max_size=3)
    ),
    FieldType(
        "dict[str, Any]",
        st.dictionaries(st.sampled_from(["k", "j"]), st.one_of(ints, text_values), max_size=2),
    ),
    FieldType("tuple[int, str]", st.tuples(ints, text_values).map(lambda t: {"$tuple": list(t)})),
    FieldType("Optional[int]", st.one_of(st.none(), ints)),
    FieldType("int | None", st.one_of(st.none(), ints)),
    FieldType("str | None", st.one_of(st.none(), text_values)),
    FieldType("Union[int, str]", st.one_of(ints, text_values)),
    FieldType("Literal['yes', 'no']", st.sampled_from(["yes", "no"])),
    FieldType(
        "Literal[\"it's\", 'say \"hi\"', 'plain']", st.sampled_from(["it's", 'say "hi"', "plain"])
    ),
    FieldType("Literal[1, 2, 3]", st.sampled_from([1, 2, 3])),
    FieldType("Color", st.sampled_from(["red", "green"]).map(lambda v: {"$enum": "Color", "v": v})),
    FieldType("Item", item_values),
    FieldType("list[Item]", st.lists(item_values, max_size=2)),
    FieldType("Optional[Item]", st.one_of(st.none(), item_values)),
    FieldType("dspy.History", history_values, input_only=True),
]
TYPE_BY_EXPR = {t.expr: t for t in TYPES}

NUMBER_CONSTRAINTS = ["ge", "le", "gt", "lt", "multiple_of"]
LENGTH_CONSTRAINTS = ["min_length", "max_length"]


@st.composite
def constraints_for(draw: Any, expr: str) -> dict[str, Any]:
    if expr in ("int", "float"):
        keys = draw(st.lists(st.sampled_from(NUMBER_CONSTRAINTS), unique=True, max_size=3))
        found: dict[str, Any] = {}
        for key in keys:
            found[key] = (
                draw(st.integers(1, 5)) if key == "multiple_of" else draw(st.integers(-5, 50))
            )
        if expr == "float" and draw(st.booleans()):
            found["allow_inf_nan"] = draw(st.booleans())
        return found
    if expr in ("str", "list[str]", "list[int]"):
        keys = draw(st.lists(st.sampled_from(LENGTH_CONSTRAINTS), unique=True, max_size=2))
        return {key: draw(st.integers(0, 5)) for key in keys}
    return {}


@st.composite
def model_types(draw: Any) -> dict[str, Any]:
    qty: dict[str, Any] = {"name": "qty", "type": "int"}
    qty_constraints = draw(constraints_for("int"))
    if qty_constraints:
        qty["constraints"] = qty_constraints
    if draw(st.booleans()):
        qty["description"] = draw(st.sampled_from(["how many", "Anzahl ✓"]))
    tags: dict[str, Any] = {"name": "tags", "type": "list[str]"}
    if draw(st.booleans()):
        tags["default"] = []
    return {
        "Color": {"kind": "enum", "members": [["RED", "red"], ["GREEN", "green"]]},
        "Item": {"kind": "model", "fields": [{"name": "name", "type": "str"}, qty, tags]},
    }


def render_text(expr: str, value: Any) -> str:
    """How a well-behaved LM would write ``value`` in a ChatAdapter section."""
    if isinstance(value, dict) and "$enum" in value:
        return str(value["v"])
    if isinstance(value, dict) and "$model" in value:
        return json.dumps(value["v"], ensure_ascii=False)
    if isinstance(value, dict) and "$tuple" in value:
        return json.dumps(value["$tuple"], ensure_ascii=False)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return json.dumps(
            [v["v"] if isinstance(v, dict) and "$model" in v else v for v in value],
            ensure_ascii=False,
        )
    if isinstance(value, dict | bool) or value is None:
        return json.dumps(value, ensure_ascii=False) if not isinstance(value, bool) else str(value)
    return str(value)


def json_value(value: Any) -> Any:
    if isinstance(value, dict) and "$enum" in value:
        return value["v"]
    if isinstance(value, dict) and "$model" in value:
        return value["v"]
    if isinstance(value, dict) and "$tuple" in value:
        return value["$tuple"]
    if isinstance(value, list):
        return [json_value(v) for v in value]
    return value


@st.composite
def field_specs(draw: Any, io: str, class_form: bool) -> dict[str, Any]:
    choices = [t for t in TYPES if io == "input" or not t.input_only]
    ftype = draw(st.sampled_from(choices))
    spec: dict[str, Any] = {"io": io, "type": ftype.expr}
    if class_form:
        if ftype.expr == "str" and draw(st.integers(0, 3)) == 0:
            spec["type"] = None  # declared without an annotation
        if draw(st.booleans()):
            spec["desc"] = draw(
                st.sampled_from(["The answer.", "ünïcode ✓", "", "multi\nline", "${x}"])
            )
        if draw(st.integers(0, 3)) == 0:
            spec["prefix"] = draw(st.sampled_from(["Custom:", "Q", ""]))
        constraints = draw(constraints_for(ftype.expr))
        if constraints and draw(st.booleans()):
            spec["constraints"] = constraints
        if draw(st.integers(0, 5)) == 0:
            spec["default"] = json_value(draw(ftype.values))
    return spec


@st.composite
def signatures(draw: Any) -> dict[str, Any]:
    class_form = draw(st.booleans())
    names = draw(st.lists(st.sampled_from(FIELD_NAMES), min_size=2, max_size=5, unique=True))
    split = draw(st.integers(1, len(names) - 1))
    fields = []
    for index, name in enumerate(names):
        spec = draw(field_specs("input" if index < split else "output", class_form))
        fields.append({"name": name, **spec})
    if class_form:
        doc = draw(
            st.sampled_from(
                [
                    None,
                    "Answer the question.",
                    "  Indented\n    docstring\n\n  with gap.",
                    "Ünïcode task ✓",
                ]
            )
        )
        if draw(st.integers(0, 19)) == 10:
            fields.append({"name": "plain", "io": "plain", "type": "str"})  # not Input/OutputField
        return {"kind": "class", "name": "CaseSignature", "doc": doc, "fields": fields}

    def side(items: list[dict[str, Any]]) -> str:
        parts = []
        for field in items:
            if field["type"] == "str" and draw(st.booleans()):
                parts.append(field["name"])
            else:
                parts.append(f"{field['name']}: {field['type']}")
        return ", ".join(parts)

    text = f"{side(fields[:split])} -> {side(fields[split:])}"
    if draw(st.integers(0, 9)) == 5:  # a middle value: hypothesis favours the ends
        text = draw(st.sampled_from(ODD_SPECS))
    instructions = draw(st.sampled_from([None, "", "Be brief.", "Line one.\nLine two."]))
    return {"kind": "string", "text": text, "instructions": instructions, "fields": fields}


def _chat_completion(outputs: list[tuple[str, str]], draw: Any) -> str:
    blocks = [f"[[ ## {name} ## ]]\n{text}" for name, text in outputs]
    style = draw(st.integers(0, 9))
    if style == 1 and blocks:
        blocks = blocks[1:]  # a field missing
    if style == 2:
        blocks.reverse()
    text = "\n\n".join(blocks)
    if style != 3:
        text += "\n\n[[ ## completed ## ]]"
    if style == 4:
        text = "Sure! Here you go.\n" + text
    if style == 5:
        text = text.replace("\n", "\r\n")
    if style == 6:
        text = draw(st.sampled_from(["", "no markers at all", "[[ ## unknown ## ]]\nx"]))
    return text


def _json_completion(outputs: list[tuple[str, Any]], draw: Any) -> str:
    payload = {name: value for name, value in outputs}
    style = draw(st.integers(0, 7))
    if style == 1 and payload:
        payload.pop(next(iter(payload)))
    if style == 2:
        payload = dict(reversed(list(payload.items())))
    text = json.dumps(payload, ensure_ascii=False, indent=draw(st.sampled_from([None, 2])))
    if style == 3:
        text = f"Here:\n```json\n{text}\n```"
    if style == 4:
        text = text[: max(1, len(text) - 2)]  # truncated
    if style == 5:
        text = json.dumps({k: str(v) for k, v in payload.items()}, ensure_ascii=False)
    if style == 6:
        text = draw(st.sampled_from(["", "[1, 2]", "not json", '{"unrelated": 1}']))
    return text


def _xml_element(name: str, value: Any, draw: Any) -> str:
    """``value`` as an LM would tag it: text, or nested ``<item>`` / key elements."""
    if isinstance(value, list) and draw(st.booleans()):
        items = "".join(f"<item>{_xml_text(json_value(v))}</item>" for v in value)
        return f"<{name}>{items}</{name}>"
    plain = json_value(value)
    if isinstance(plain, dict) and draw(st.booleans()):
        inner = "".join(f"<{k}>{_xml_text(v)}</{k}>" for k, v in plain.items())
        return f"<{name}>{inner}</{name}>"
    text = render_text("", value)
    if draw(st.integers(0, 4)):  # mostly well-formed; sometimes a raw & or < breaks the XML
        text = text.replace("&", "&amp;").replace("<", "&lt;")
    return f"<{name}>\n{text}\n</{name}>"


def _xml_text(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)
    return text.replace("&", "&amp;").replace("<", "&lt;")


def _xml_completion(outputs: list[tuple[str, Any]], draw: Any) -> str:
    blocks = [_xml_element(name, value, draw) for name, value in outputs]
    style = draw(st.integers(0, 7))
    if style == 1 and blocks:
        blocks = blocks[1:]  # a field missing
    if style == 2:
        blocks.reverse()
    text = "\n\n".join(blocks)
    if style == 3:
        text = "Sure! Here you go.\n" + text
    if style == 4:
        text = text.replace("\n", "\r\n")
    if style == 5:
        text = draw(st.sampled_from(["", "no tags at all", "<unknown>x</unknown>", "<a><b></a>"]))
    return text


FREE_TEXT = ["The answer is 42.", "", "reasoning: because\nanswer: yes", "¯\\_(ツ)_/¯"]


@st.composite
def cases(draw: Any) -> dict[str, Any]:
    signature = draw(signatures())
    fields = signature["fields"]
    module = draw(st.sampled_from(["predict", "cot"]))
    adapter = draw(st.sampled_from(["chat", "json", "xml", "twostep"]))
    outputs = [f for f in fields if f["io"] == "output"]
    inputs_spec = [f for f in fields if f["io"] == "input"]
    all_fields = (
        [{"name": "reasoning", "type": "str", "io": "output"}] if module == "cot" else []
    ) + outputs

    def value_for(field: dict[str, Any]) -> Any:
        return draw(TYPE_BY_EXPR[field["type"] or "str"].values)

    inputs: dict[str, Any] = {}
    for field in inputs_spec:
        presence = draw(st.integers(0, 9))
        if presence == 0:
            continue  # missing input
        if presence == 2 and draw(st.booleans()):
            inputs[field["name"]] = draw(opaque_values)  # a value of no JSON type at all
            continue
        inputs[field["name"]] = draw(text_values) if presence == 1 else value_for(field)
    if draw(st.integers(0, 9)) == 0:
        inputs["unexpected"] = draw(text_values)
    demos = []
    for _ in range(draw(st.integers(0, 3))):
        demo: dict[str, Any] = {}
        for field in inputs_spec + all_fields:
            if field["type"] == "dspy.History":
                continue
            roll = draw(st.integers(0, 9))
            if roll == 0:
                continue
            demo[field["name"]] = None if roll == 1 else value_for(field)
        demos.append({"$example": demo} if draw(st.booleans()) else demo)
    completions, extraction = [], []
    for _ in range(draw(st.integers(1, 2))):
        values = [
            (f["name"], draw(text_values) if draw(st.integers(0, 7)) == 0 else value_for(f))
            for f in all_fields
        ]
        if adapter in ("chat", "twostep"):
            texts = [(name, render_text("", v)) for name, v in values]
            (extraction if adapter == "twostep" else completions).append(
                _chat_completion(texts, draw)
            )
            if adapter == "twostep":
                completions.append(draw(st.one_of(st.sampled_from(FREE_TEXT), text_values)))
        elif adapter == "xml":
            completions.append(_xml_completion(values, draw))
        else:
            completions.append(_json_completion([(n, json_value(v)) for n, v in values], draw))
    return {
        "types": draw(model_types()),
        "signature": signature,
        "module": module,
        "adapter": adapter,
        "demos": demos,
        "inputs": inputs,
        "completions": completions,
        "extraction": extraction,
        "async": draw(st.integers(0, 4)) == 0,
    }
