"""One side of the differential check: runs JSON cases through DSPy or dspyq.

``python fidelity_side.py dspy`` (or ``dspyq``) reads one JSON case per line on stdin and
writes one JSON result per line on stdout. Both libraries are driven by this same
code, through the names they share (``Signature``, ``InputField``, ``ChatAdapter``,
``Predict``, ``context`` ...), so a case is built the same way on both sides and
only the library differs. The library is imported under the name ``dspy`` in this
module, so string signatures may write ``dspy.History`` as a user porting a DSPy
program would.

A case (see ``fidelity_cases.py``) names its types (enums, pydantic models), a signature
(string or class), the module (Predict or ChainOfThought), the adapter, demos,
inputs and completions. The result records, for each of ``format``, ``parse`` and
``call``: the messages or values produced, or the error class (with its bases), and
the warnings logged or issued.
"""

from __future__ import annotations

import asyncio
import builtins
import enum
import importlib
import json
import logging
import math
import sys
import typing
import warnings
from typing import Any

import pydantic

LIBRARY = sys.argv[1] if __name__ == "__main__" else "dspyq"
dspy: Any = importlib.import_module(LIBRARY)


# --- building a case -------------------------------------------------------------------


def _namespace(type_specs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(eval namespace for type expressions, the case's own named types)."""
    namespace: dict[str, Any] = {name: getattr(typing, name) for name in typing.__all__}
    namespace.update({name: getattr(builtins, name) for name in ("int", "str", "float", "bool")})
    namespace.update({"list": list, "dict": dict, "tuple": tuple, "History": dspy.History})
    namespace["dspy"] = dspy
    custom: dict[str, Any] = {}
    for name, spec in type_specs.items():
        if spec["kind"] == "enum":
            made: Any = enum.Enum(name, [tuple(member) for member in spec["members"]])
        else:
            fields = {}
            for field in spec["fields"]:
                options = dict(field.get("constraints", {}))
                if "description" in field:
                    options["description"] = field["description"]
                default = field.get("default", ...)
                annotation = eval(field["type"], namespace)  # the case's own type expression
                fields[field["name"]] = (annotation, pydantic.Field(default, **options))
            made = pydantic.create_model(name, **fields)
        namespace[name] = custom[name] = made
    return namespace, custom


def _field(io: str, spec: dict[str, Any]) -> Any:
    options = dict(spec.get("constraints", {}))
    for key in ("desc", "description", "prefix", "default"):
        if key in spec:
            options[key] = spec[key]
    return (dspy.InputField if io == "input" else dspy.OutputField)(**options)


def build_signature(case: dict[str, Any], namespace: dict[str, Any], custom: dict[str, Any]) -> Any:
    spec = case["signature"]
    if spec["kind"] == "string":
        return dspy.Signature(
            spec["text"], spec.get("instructions"), custom_types={**custom, "dspy": dspy}
        )
    body: dict[str, Any] = {"__module__": __name__, "__annotations__": {}}
    if spec.get("doc") is not None:
        body["__doc__"] = spec["doc"]
    for field in spec["fields"]:
        if field.get("type") is not None:
            body["__annotations__"][field["name"]] = eval(field["type"], namespace)
        if field["io"] == "plain":
            body[field["name"]] = pydantic.Field()
        else:
            body[field["name"]] = _field(field["io"], field)
    return type(dspy.Signature)(spec.get("name", "CaseSignature"), (dspy.Signature,), body)


class Opaque:
    """A value pydantic cannot serialise: shown by its str()."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return f"Opaque<{self.text}>"

    __repr__ = __str__


def decode(value: Any, custom: dict[str, Any]) -> Any:
    """JSON case values to Python: ``{"$model": N, "v": {...}}``, ``$enum``, ``$tuple``, ``$history``, ``$float``."""
    if isinstance(value, list):
        return [decode(item, custom) for item in value]
    if not isinstance(value, dict):
        return value
    if "$model" in value:
        return custom[value["$model"]].model_validate(decode(value["v"], custom))
    if "$enum" in value:
        return custom[value["$enum"]](value["v"])
    if "$tuple" in value:
        return tuple(decode(item, custom) for item in value["$tuple"])
    if "$opaque" in value:
        return Opaque(value["$opaque"])
    if "$example" in value:
        return dspy.Example(**decode(value["$example"], custom))
    if "$history" in value:
        return dspy.History(messages=decode(value["$history"], custom))
    if "$float" in value:
        return float(value["$float"])
    return {key: decode(item, custom) for key, item in value.items()}


def encode(value: Any) -> Any:
    """A value with its type, keeping dict key order, so both sides compare exactly."""
    if value is None or isinstance(value, bool | int | str):
        return [type(value).__name__, value]
    if isinstance(value, float):
        return ["float", repr(value) if math.isnan(value) or math.isinf(value) else value]
    if isinstance(value, enum.Enum):
        return [f"enum:{type(value).__name__}", encode(value.value)]
    if isinstance(value, pydantic.BaseModel):
        fields = type(value).model_fields
        return [f"model:{type(value).__name__}", [[k, encode(getattr(value, k))] for k in fields]]
    if isinstance(value, dict):
        return ["dict", [[encode(k), encode(v)] for k, v in value.items()]]
    if isinstance(value, list | tuple | set | frozenset):
        return [type(value).__name__, [encode(item) for item in value]]
    return [type(value).__name__, repr(value)]


# --- running it -------------------------------------------------------------------------


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not any(record is seen for seen in self.records):  # both loggers pass it on
            self.records.append(record)
            self.seen.append(record.getMessage())


def _fake_lm_class() -> type:
    base = getattr(dspy, "BaseLM", object) if LIBRARY == "dspy" else object

    class FakeLM(base):  # type: ignore[misc, valid-type]
        """Answers each call with the next completion and records the messages sent."""

        def __init__(self, completions: list[str]) -> None:
            if base is not object:
                super().__init__(model="fake/model")
            self.completions = list(completions)
            self.calls: list[Any] = []
            self.kwargs: dict[str, Any] = {}

        def __call__(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> list[str]:
            self.calls.append(messages)
            index = len(self.calls) - 1
            return [self.completions[index % len(self.completions)]] if self.completions else [""]

        async def acall(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> list[str]:
            return self(prompt, messages=messages, **kwargs)

    return FakeLM


FAKE_LM = _fake_lm_class()


def _type_text(annotation: Any) -> str:
    text = str(annotation)
    for path in ("dspy.adapters.types.history.History", "dspyq.core.types.History"):
        text = text.replace(path, "History")
    return text


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "error": type(exc).__name__,
        "bases": [c.__name__ for c in type(exc).__mro__],
        "message": str(exc)[:300],
    }


def _attempt(fn: Any) -> dict[str, Any]:
    handler = _Warnings()
    loggers = [logging.getLogger(), logging.getLogger(LIBRARY)]  # DSPy's does not propagate
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as issued:
            warnings.simplefilter("always")
            try:
                out = fn()
            except Exception as exc:
                out = _error(exc)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    out["warnings"] = handler.seen + [str(w.message) for w in issued]
    return out


def _messages(messages: list[dict[str, Any]]) -> list[Any]:
    return [[m.get("role"), m.get("content")] for m in messages]


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    built: dict[str, Any] = {}

    def build() -> dict[str, Any]:
        namespace, custom = _namespace(case.get("types", {}))
        signature = build_signature(case, namespace, custom)
        module = (
            dspy.ChainOfThought(signature)
            if case.get("module") == "cot"
            else dspy.Predict(signature)
        )
        predictor = module.predict if case.get("module") == "cot" else module
        built.update(custom=custom, module=module, signature=predictor.signature)
        fields = built["signature"].fields
        return {"fields": [[name, _type_text(f.annotation)] for name, f in fields.items()]}

    result["build"] = _attempt(build)
    if "error" in result["build"]:
        return result
    custom, signature = built["custom"], built["signature"]
    extractor = FAKE_LM(case.get("extraction", []))  # TwoStepAdapter's second LM

    def adapter_class() -> Any:
        kind = case.get("adapter")
        if kind == "twostep":
            return dspy.TwoStepAdapter(extractor)
        return {"json": dspy.JSONAdapter, "xml": dspy.XMLAdapter}.get(kind, dspy.ChatAdapter)()

    try:
        demos = decode(case.get("demos", []), custom)
        inputs = decode(case.get("inputs", {}), custom)
    except pydantic.ValidationError as exc:  # a value the case's own model refuses
        result["decode"] = _error(exc)
        return result

    result["format"] = _attempt(
        lambda: {"messages": _messages(adapter_class().format(signature, demos, dict(inputs)))}
    )
    result["parse"] = [
        _attempt(lambda c=c: {"value": encode(adapter_class().parse(signature, c))})
        for c in case.get("completions", [])
    ]

    def call() -> dict[str, Any]:
        lm = FAKE_LM(case.get("completions", []))
        target = built["module"].predict if case.get("module") == "cot" else built["module"]
        target.demos = demos
        try:
            with dspy.context(lm=lm, adapter=adapter_class()):
                if case.get("async"):
                    prediction = asyncio.run(built["module"].acall(**inputs))
                else:
                    prediction = built["module"](**inputs)
        finally:
            result["lm_calls"] = [_messages(messages) for messages in lm.calls]
            result["extraction_calls"] = [_messages(messages) for messages in extractor.calls]
        return {"value": encode(dict(prediction.items()))}

    if case.get("completions"):
        result["call"] = _attempt(call)
    return result


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            out = run_case(json.loads(line))
        except Exception as exc:  # a harness failure must not stop the other cases
            out = {"harness_error": repr(exc)}
        sys.stdout.write(json.dumps(out, ensure_ascii=False, default=repr) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
