"""ChatAdapter: DSPy's default prompt style, with ``[[ ## field ## ]]`` section markers.

Outputs are requested as marked sections ending with ``[[ ## completed ## ]]`` and
parsed back section by section. When a completion cannot be parsed, the adapter makes
one more LM call through a fresh :class:`~dspyq.adapters.json_adapter.JSONAdapter`
(unless ``use_json_adapter_fallback=False``), as DSPy 3.4.1 does; if that fails too,
up to ``max_parse_retries`` repair calls follow (:mod:`dspyq.adapters.repair`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic.fields import FieldInfo

from dspyq.adapters.base import Adapter
from dspyq.adapters.repair import ParseRepair, max_parse_retries
from dspyq.adapters.schema import field_placeholder
from dspyq.adapters.values import format_field_value
from dspyq.core.signature import Signature
from dspyq.core.text_types import ToolCalls
from dspyq.core.types import annotation_name
from dspyq.errors import AdapterParseError

FIELD_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")


def marked_blocks(fields: Mapping[str, FieldInfo], values: Mapping[str, Any]) -> str:
    """``[[ ## name ## ]]\\n<value>`` for each field, joined by blank lines."""
    blocks = [
        f"[[ ## {name} ## ]]\n{format_field_value(field, values[name])}"
        for name, field in fields.items()
    ]
    return "\n\n".join(blocks).strip()


def placeholder_blocks(fields: Mapping[str, FieldInfo]) -> str:
    """The structure section: each field's marker over its ``{name}`` placeholder."""
    return "\n\n".join(
        f"[[ ## {name} ## ]]\n{field_placeholder(name, field)}" for name, field in fields.items()
    ).strip()


def python_type_hint(field: FieldInfo) -> str:
    """`` (must be formatted as a valid Python T)`` for non-str fields, else ``""``."""
    if field.annotation is str:
        return ""
    if field.annotation is ToolCalls:
        return ' (must be a JSON object like {"tool_calls": [{"name": "...", "args": {...}}]})'
    return f" (must be formatted as a valid Python {annotation_name(field.annotation)})"


def split_sections(completion: str) -> list[tuple[str | None, str]]:
    """(header, text) pairs; text before the first header has header None."""
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in completion.splitlines():
        match = FIELD_HEADER.match(line.strip())
        if match:
            # DSPy slices the unstripped line at the match end; keep that exact behaviour.
            rest = line[match.end() :].strip()
            sections.append((match.group(1), [rest] if rest else []))
        else:
            sections[-1][1].append(line)
    return [(header, "\n".join(lines).strip()) for header, lines in sections]


class ChatAdapter(Adapter):
    """Prompts with ``[[ ## field ## ]]`` sections; falls back to JSON once on a parse failure."""

    name = "ChatAdapter"

    def __init__(
        self,
        callbacks: list[Any] | None = None,
        use_native_function_calling: bool = False,
        use_json_adapter_fallback: bool = True,
        parallel_tool_calls: bool | None = None,
    ) -> None:
        self.callbacks = callbacks or []
        self.use_native_function_calling = use_native_function_calling
        self.use_json_adapter_fallback = use_json_adapter_fallback
        self.parallel_tool_calls = parallel_tool_calls

    def format_field_structure(self, signature: type[Signature]) -> str:
        parts = [
            "All interactions will be structured in the following way, with the appropriate values filled in.",
            placeholder_blocks(signature.input_fields),
            placeholder_blocks(signature.output_fields),
            "[[ ## completed ## ]]\n",
        ]
        return "\n\n".join(parts).strip()

    def user_message_output_requirements(self, signature: type[Signature]) -> str:
        fields = ", then ".join(
            f"`[[ ## {name} ## ]]`{python_type_hint(field)}"
            for name, field in signature.output_fields.items()
        )
        return (
            f"Respond with the corresponding output fields, starting with the field {fields}, "
            "and then ending with the marker for `[[ ## completed ## ]]`."
        )

    def format_assistant_message_content(
        self,
        signature: type[Signature],
        outputs: Mapping[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        values = {
            name: outputs.get(name, missing_field_message) for name in signature.output_fields
        }
        return marked_blocks(signature.output_fields, values) + "\n\n[[ ## completed ## ]]\n"

    def format_finetune_data(
        self,
        signature: type[Signature],
        demos: list[Any],
        inputs: Mapping[str, Any],
        outputs: Mapping[str, Any],
    ) -> dict[str, list[Any]]:
        """One fine-tuning record in OpenAI's chat form: the prompt's messages, then the
        assistant's answer formatted as this adapter would want it."""
        messages = self.format(signature=signature, demos=demos, inputs=inputs)
        answer = self.format_assistant_message_content(signature=signature, outputs=outputs)
        return {"messages": [*messages, {"role": "assistant", "content": answer}]}

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """Values of the output sections; the first occurrence of a field wins."""
        values: dict[str, Any] = {}
        for header, text in split_sections(completion):
            if header is None or header in values or header not in signature.output_fields:
                continue
            values[header] = self._parse_field(signature, header, text, completion)
        return self._complete_outputs(signature, values, completion)

    def __call__(
        self,
        lm: Any,
        lm_kwargs: Mapping[str, Any],
        signature: type[Signature],
        demos: list[Any],
        inputs: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        """As :meth:`Adapter.__call__`; a final parse failure may then be repaired."""
        try:
            return super().__call__(lm, lm_kwargs, signature, demos, inputs)
        except AdapterParseError as error:
            # Only the adapter whose failure is final repairs, so it happens once per call.
            if self._fallback_adapter() is not None or not max_parse_retries():
                raise
            repair = ParseRepair.start(self, lm, lm_kwargs, signature, demos, inputs)
            return repair.run(lm, error)

    async def acall(
        self,
        lm: Any,
        lm_kwargs: Mapping[str, Any],
        signature: type[Signature],
        demos: list[Any],
        inputs: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        """Async twin of :meth:`__call__`."""
        try:
            return await super().acall(lm, lm_kwargs, signature, demos, inputs)
        except AdapterParseError as error:
            if self._fallback_adapter() is not None or not max_parse_retries():
                raise
            repair = ParseRepair.start(self, lm, lm_kwargs, signature, demos, inputs)
            return await repair.arun(lm, error)

    def _fallback_adapter(self) -> Adapter | None:
        """A fresh JSONAdapter, unless ``use_json_adapter_fallback`` is off."""
        if not self.use_json_adapter_fallback:
            return None
        from dspyq.adapters.json_adapter import JSONAdapter  # it subclasses this one

        return JSONAdapter()
