"""TwoStepAdapter: a free-form first call, then a second LM extracts the output fields.

The main LM gets a plain prompt (a task description, ``name: value`` lines, no
structure to follow), which suits reasoning models that struggle with formats; its
answer is then handed to ``extraction_model`` through a fresh ChatAdapter with the
signature ``text -> <the original outputs>``, as DSPy 3.4.1 does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dspyq.adapters.base import Adapter, Message, field_description_block, parse_failure
from dspyq.adapters.chat import ChatAdapter
from dspyq.core.signature import InputField, Signature, make_signature
from dspyq.errors import AdapterParseError

_TASK_LEAD = "You are a helpful assistant that can solve tasks based on user input."
_DETAIL = "You should lay out your outputs in detail so that your answer can be understood by another agent"


def extractor_signature(signature: type[Signature]) -> type[Signature]:
    """``text -> <signature's outputs>``, with instructions to copy the values verbatim."""
    fields: dict[str, Any] = {"text": (str, InputField())}
    fields.update({name: (f.annotation, f) for name, f in signature.output_fields.items()})
    names = ", ".join(f"`{name}`" for name in signature.output_fields)
    # The run of spaces is DSPy's (a continued string literal), kept for identical prompts.
    instructions = (
        f"The input is a text that should contain all the necessary information to produce the fields {names}. "
        "            Your job is to extract the fields from the text verbatim. "
        "Extract precisely the appropriate value (content) for each field."
    )
    return make_signature(fields, instructions)


class TwoStepAdapter(Adapter):
    """Asks the main LM in prose, then extracts the fields with ``extraction_model``."""

    name = "TwoStepAdapter"

    def __init__(self, extraction_model: Any) -> None:
        if not callable(extraction_model) or not hasattr(extraction_model, "acall"):
            raise ValueError("extraction_model must be an LM (a dspyq.LM or an object like it)")
        self.extraction_model = extraction_model

    def format(
        self, signature: type[Signature], demos: list[Any], inputs: Mapping[str, Any]
    ) -> list[Message]:
        """A system task description, the demos, then the inputs as ``name: value`` lines."""
        messages: list[Message] = [
            {"role": "system", "content": self.format_task_description(signature)}
        ]
        messages.extend(self.format_demos(signature, demos))
        messages.append(
            {"role": "user", "content": self.format_user_message_content(signature, inputs)}
        )
        return messages

    def format_task_description(self, signature: type[Signature]) -> str:
        parts = [
            _TASK_LEAD,
            "As input, you will be provided with:\n"
            + field_description_block(signature.input_fields),
            "Your outputs must contain:\n" + field_description_block(signature.output_fields),
            _DETAIL,
        ]
        if signature.instructions:
            parts.append(f"Specific instructions: {signature.instructions}")
        return "\n".join(parts)

    def format_user_message_content(
        self,
        signature: type[Signature],
        inputs: Mapping[str, Any],
        prefix: str = "",
        suffix: str = "",
        main_request: bool = False,
    ) -> str:
        # Values are str()-ed as they are, without the other adapters' JSON rendering.
        lines = [
            f"{name}: {inputs.get(name, '')}" for name in signature.input_fields if name in inputs
        ]
        return "\n\n".join([prefix, *lines, suffix]).strip()

    def format_assistant_message_content(
        self,
        signature: type[Signature],
        outputs: Mapping[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        lines = [
            f"{name}: {outputs.get(name)}" for name in signature.output_fields if name in outputs
        ]
        return "\n\n".join(lines).strip()

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """The fields the extraction model finds in ``completion``."""
        try:
            extracted = ChatAdapter()(
                self.extraction_model, {}, extractor_signature(signature), [], {"text": completion}
            )
        except AdapterParseError as exc:
            raise self._extraction_failure(signature, completion, exc) from exc
        return extracted[0]

    async def acall(
        self,
        lm: Any,
        lm_kwargs: Mapping[str, Any],
        signature: type[Signature],
        demos: list[Any],
        inputs: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        """Like the sync call, with both LM calls awaited; an empty answer is extracted too."""
        messages = self.format(signature, demos, inputs)
        outputs = await lm.acall(messages=messages, **dict(lm_kwargs))
        extractor = extractor_signature(signature)
        values = []
        for output in outputs:
            text = output["text"] if isinstance(output, Mapping) else output
            try:
                extracted = await ChatAdapter().acall(
                    self.extraction_model, {}, extractor, [], {"text": text}
                )
            except AdapterParseError as exc:
                raise self._extraction_failure(signature, str(output), exc) from exc
            values.append(extracted[0])
        return values

    def _extraction_failure(
        self, signature: type[Signature], completion: str, error: AdapterParseError
    ) -> AdapterParseError:
        message = f"Failed to parse response from the original completion: {error}"
        return parse_failure(self.name, signature, completion, message=message)
