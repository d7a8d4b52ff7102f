"""XMLAdapter: DSPy's XML prompt style, each field wrapped in ``<name>...</name>`` tags.

Inputs, demos and the structure section use tags instead of ``[[ ## name ## ]]``
markers; ``str`` outputs are escaped (``&``, ``<``) and structured outputs (lists,
dicts, models) are written and requested as nested elements (:mod:`.xml_values`).
The completion is parsed as XML; when it cannot be, the ChatAdapter's one JSONAdapter
retry applies, as in DSPy 3.4.1.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

import pydantic
from pydantic.fields import FieldInfo

from dspyq.adapters.base import parse_failure, with_output_defaults
from dspyq.adapters.chat import ChatAdapter
from dspyq.adapters.schema import field_placeholder
from dspyq.adapters.values import format_field_value, parse_value, serialize_for_json
from dspyq.adapters.xml_values import (
    elements_to_value,
    escape_text,
    field_schema,
    group_children,
    uses_nested_xml,
    value_to_xml,
    xml_schema,
)
from dspyq.core.signature import Signature


def tagged(name: str, field: FieldInfo, value: Any, is_output: bool) -> str:
    """One field as ``<name>\\nvalue\\n</name>`` (or nested elements for structured outputs)."""
    if is_output and uses_nested_xml(field.annotation):
        serialized = serialize_for_json(value)
        if isinstance(serialized, dict | list):
            return value_to_xml(serialized, name)
    text = format_field_value(field, value)
    if is_output and field.annotation is str:
        text = escape_text(text)
    return f"<{name}>\n{text}\n</{name}>"


def tagged_blocks(
    fields: Mapping[str, FieldInfo], values: Mapping[str, Any], is_output: bool
) -> str:
    blocks = [tagged(name, fields[name], value, is_output) for name, value in values.items()]
    return "\n\n".join(blocks).strip()


class XMLAdapter(ChatAdapter):
    """Prompts with ``<field>`` tags and parses the completion as XML."""

    name = "XMLAdapter"

    def format_field_structure(self, signature: type[Signature]) -> str:
        def skeleton(name: str, field: FieldInfo, is_output: bool) -> str:
            if is_output and uses_nested_xml(field.annotation):
                return xml_schema(name, field.annotation)
            return tagged(name, field, field_placeholder(name, field), is_output)

        groups = [
            "\n\n".join(skeleton(name, field, is_output) for name, field in fields.items())
            for fields, is_output in (
                (signature.input_fields, False),
                (signature.output_fields, True),
            )
        ]
        lead = "All interactions will be structured in the following way, with the appropriate values filled in."
        return "\n\n".join([lead, *groups])

    def format_user_message_content(
        self,
        signature: type[Signature],
        inputs: Mapping[str, Any],
        prefix: str = "",
        suffix: str = "",
        main_request: bool = False,
    ) -> str:
        present = {name: inputs[name] for name in signature.input_fields if name in inputs}
        parts = [prefix, tagged_blocks(signature.input_fields, present, is_output=False)]
        if main_request:
            parts.append(self.user_message_output_requirements(signature))
        return "\n\n".join([*parts, suffix]).strip()

    def format_assistant_message_content(
        self,
        signature: type[Signature],
        outputs: Mapping[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        values = {
            name: outputs.get(name, missing_field_message) for name in signature.output_fields
        }
        return tagged_blocks(signature.output_fields, values, is_output=True)

    def user_message_output_requirements(self, signature: type[Signature]) -> str:
        tags = ", then ".join(f"`<{name}>`" for name in signature.output_fields)
        schemas = [
            xml_schema(name, field.annotation)
            for name, field in signature.output_fields.items()
            if uses_nested_xml(field.annotation)
        ]
        text = f"Respond with the corresponding output fields wrapped in XML tags {tags}."
        return text + (f" Use this nested XML structure: {' '.join(schemas)}" if schemas else "")

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """Output values from the completion's top-level elements; the rest is ignored."""
        try:
            root = ET.fromstring(f"<dspy_root>{completion}</dspy_root>")
        except ET.ParseError as exc:
            raise parse_failure(
                self.name, signature, completion, message=f"Failed to parse XML: {exc}"
            ) from exc
        elements = group_children(root)
        values: dict[str, Any] = {}
        for name, field in signature.output_fields.items():
            if name in elements:
                values[name] = self._read_field(signature, field, elements[name], completion)
        values = with_output_defaults(signature, values)
        if values.keys() != signature.output_fields.keys():
            raise parse_failure(self.name, signature, completion, parsed_result=values)
        return values

    def _read_field(
        self, signature: type[Signature], field: FieldInfo, found: list[ET.Element], completion: str
    ) -> Any:
        """Try the field's schema, then each ``anyOf`` alternative; the first that validates wins."""
        schema, adapter = field_schema(field.annotation)
        value: Any = None
        error: ValueError | None = None
        for candidate in [schema, *schema.get("anyOf", [])]:
            try:
                value = elements_to_value(found, candidate, schema.get("$defs", {}))
                try:
                    return parse_value(value, field.annotation)
                except pydantic.ValidationError:
                    return adapter.validate_python(value, by_name=True)
            except ValueError as exc:  # pydantic's ValidationError is one
                error = exc
        raise parse_failure(
            self.name,
            signature,
            completion,
            message=f"Failed to parse field {field} with value {value}: {error}",
        ) from error
