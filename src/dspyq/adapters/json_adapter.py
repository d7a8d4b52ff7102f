"""JSONAdapter: asks for the outputs as one JSON object, and requests JSON from the provider.

Inputs are still written as ``[[ ## field ## ]]`` blocks; the outputs are described as
a JSON object, demo answers are pretty-printed JSON, and the LM call carries a
``response_format``: the strict ``DSPyProgramOutputs`` model when the LM supports
structured outputs, JSON mode (``{"type": "json_object"}``) otherwise.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import json_repair

from dspyq.adapters.base import Adapter, parse_failure
from dspyq.adapters.chat import ChatAdapter, placeholder_blocks, python_type_hint
from dspyq.adapters.schema import field_placeholder, has_open_ended_mapping, structured_output_model
from dspyq.adapters.values import serialize_for_json
from dspyq.core.signature import Signature
from dspyq.core.text_types import ToolCalls

logger = logging.getLogger(__name__)

JSON_MODE: dict[str, str] = {"type": "json_object"}


def first_balanced_object(text: str) -> str | None:
    """The first ``{...}`` span whose braces balance (braces inside strings count too)."""
    start = text.find("{")
    while start != -1:
        depth = 0
        for index in range(start, len(text)):
            char = text[index]
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    return text[start : index + 1]
        start = text.find("{", start + 1)
    return None


def _lm_flag(lm: Any, name: str) -> bool:
    value = getattr(lm, name, False)
    return bool(value() if callable(value) else value)


class JSONAdapter(ChatAdapter):
    """Prompts for a JSON object of the outputs and parses it (repairing broken JSON)."""

    name = "JSONAdapter"

    def __init__(
        self,
        callbacks: list[Any] | None = None,
        use_native_function_calling: bool = True,
        parallel_tool_calls: bool | None = None,
    ) -> None:
        super().__init__(
            callbacks=callbacks,
            use_native_function_calling=use_native_function_calling,
            use_json_adapter_fallback=False,
            parallel_tool_calls=parallel_tool_calls,
        )

    def _fallback_adapter(self) -> Adapter | None:
        """None: JSON is already the fallback, so its parse failure is final."""
        return None

    def format_field_structure(self, signature: type[Signature]) -> str:
        inputs = placeholder_blocks(signature.input_fields)
        outputs = self._json_object(
            {
                name: field_placeholder(name, field)
                for name, field in signature.output_fields.items()
            }
        )
        parts = [
            "All interactions will be structured in the following way, with the appropriate values filled in.",
            "Inputs will have the following structure:",
            inputs,
            "Outputs will be a JSON object with the following fields.",
            outputs,
        ]
        return "\n\n".join(parts).strip()

    @staticmethod
    def _json_object(values: Mapping[str, Any]) -> str:
        return json.dumps(serialize_for_json(dict(values)), indent=2, ensure_ascii=False)

    def user_message_output_requirements(self, signature: type[Signature]) -> str:
        fields = ", then ".join(
            f"`{name}`{python_type_hint(field)}" for name, field in signature.output_fields.items()
        )
        return f"Respond with a JSON object in the following order of fields: {fields}."

    def format_assistant_message_content(
        self,
        signature: type[Signature],
        outputs: Mapping[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        return self._json_object(
            {name: outputs.get(name, missing_field_message) for name in signature.output_fields}
        )

    def format_finetune_data(self, *args: Any, **kwargs: Any) -> dict[str, list[Any]]:
        raise NotImplementedError  # as in DSPy: no fine-tuning data in JSON form yet

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """Output values from the first JSON object in the completion; other keys are dropped."""
        loaded = json_repair.loads(completion)
        if not isinstance(loaded, dict):
            span = first_balanced_object(completion)
            if span is not None:
                completion = span
                loaded = json_repair.loads(completion)
        if not isinstance(loaded, dict):
            raise parse_failure(
                self.name,
                signature,
                completion,
                message="LM response cannot be serialized to a JSON object.",
            )
        values: dict[str, Any] = {}
        for name, raw in loaded.items():
            if name in signature.output_fields:
                values[name] = self._parse_field(signature, name, raw, completion)
        return self._complete_outputs(signature, values, completion)

    def prepare_lm_kwargs(
        self, lm: Any, lm_kwargs: Mapping[str, Any], signature: type[Signature]
    ) -> dict[str, Any]:
        """Add ``response_format``: the strict output model if the LM takes schemas, else JSON mode."""
        kwargs = dict(lm_kwargs)
        supported = getattr(lm, "supported_params", None)
        if (
            isinstance(supported, list | set | tuple | frozenset)
            and "response_format" not in supported
        ):
            return kwargs
        # Calls read from the text (not natively) are asked for in plain JSON mode, as in DSPy.
        text_calls = not self.use_native_function_calling and any(
            field.annotation is ToolCalls for field in signature.output_fields.values()
        )
        if (
            not _lm_flag(lm, "supports_response_schema")
            or has_open_ended_mapping(signature)
            or text_calls
        ):
            kwargs["response_format"] = dict(JSON_MODE)
            return kwargs
        try:
            kwargs["response_format"] = structured_output_model(signature)
        except Exception as exc:  # a type pydantic cannot describe: JSON mode still works
            logger.warning("Cannot build a structured-output schema (%s); using JSON mode.", exc)
            kwargs["response_format"] = dict(JSON_MODE)
        return kwargs
