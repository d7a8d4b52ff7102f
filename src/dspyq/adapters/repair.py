"""Self-repair: show the model its own parse error and ask again, up to ``max_parse_retries`` times.

DSPy gives up once the JSON fallback cannot be parsed either. Here the adapter whose
failure is final (a JSONAdapter fallback, a JSONAdapter, or a ChatAdapter without
fallback) may make further calls: the conversation that failed, the model's bad reply
as an assistant turn, and a user turn quoting the parse error and repeating the exact
format the adapter expects. Each attempt is a ``parse_retry`` event; the first reply
that parses ends the repair, and when every attempt fails the last parse error is raised.

The default is 0 retries: with it every call, failed or not, is exactly DSPy 3.4.1's
(same prompts, same number of LM calls, same error). Turn it on with
``dspyq.configure(max_parse_retries=2)`` or ``DSPYQ_MAX_PARSE_RETRIES=2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dspyq.core import observe
from dspyq.core.context import current
from dspyq.core.signature import Signature
from dspyq.errors import AdapterParseError, ConfigurationError
from dspyq.settings import get_settings

if TYPE_CHECKING:
    from dspyq.adapters.base import Adapter, Message

__all__ = ["PARSE_RETRY", "ParseRepair", "max_parse_retries"]

PARSE_RETRY = "parse_retry"
_EVENT_ERROR_CHARS = 500


def max_parse_retries() -> int:
    """Retries allowed here: ``configure``/``context(max_parse_retries=N)``, else the setting."""
    configured = current().get("max_parse_retries")
    value = get_settings().max_parse_retries if configured is None else configured
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            f"max_parse_retries must be a whole number >= 0, not {value!r}",
            context={"max_parse_retries": repr(value)},
        )
    return value


def describe_parse_error(error: AdapterParseError, signature: type[Signature]) -> str:
    """The error as the model should read it: what went wrong, without echoing its reply."""
    text = str(error)
    lead = text.split(f"Adapter {error.adapter_name} failed to parse", 1)[0].strip()
    expected = ", ".join(signature.output_fields)
    parts = [lead] if lead else []
    parts.append(f"Expected output fields: [{expected}].")
    if error.parsed_result is not None:
        parts.append(f"Output fields found in your response: [{', '.join(error.parsed_result)}].")
    return " ".join(parts)


@dataclass
class ParseRepair:
    """One repair conversation for an adapter whose parse failure is final."""

    adapter: Adapter
    signature: type[Signature]
    messages: list[Message]
    lm_kwargs: dict[str, Any]
    retries: int
    attempt: int = 0
    history: list[Message] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        adapter: Adapter,
        lm: Any,
        lm_kwargs: Mapping[str, Any],
        signature: type[Signature],
        demos: list[Any],
        inputs: Mapping[str, Any],
    ) -> ParseRepair:
        """The repair of the call ``adapter`` just made (its messages rebuilt, as sent)."""
        return cls(
            adapter=adapter,
            signature=signature,
            messages=adapter.format(signature, demos, inputs),
            lm_kwargs=adapter.prepare_lm_kwargs(lm, lm_kwargs, signature),
            retries=max_parse_retries(),
        )

    def next_messages(self, error: AdapterParseError) -> list[Message] | None:
        """The conversation for the next attempt after ``error``; None once retries are spent."""
        if self.attempt >= self.retries:
            return None
        self.attempt += 1
        requirements = self.adapter.user_message_output_requirements(self.signature) or ""
        self.history += [
            {"role": "assistant", "content": error.lm_response or ""},
            {
                "role": "user",
                "content": (
                    "Your previous response could not be parsed: "
                    f"{describe_parse_error(error, self.signature)}\n\n"
                    f"Respond again, in exactly the requested format. {requirements}"
                ).strip(),
            },
        ]
        return [*self.messages, *self.history]

    def record(self, error: AdapterParseError, outcome: str) -> None:
        """Emit the ``parse_retry`` event of the attempt just made."""
        observe.emit(
            PARSE_RETRY,
            {
                "attempt": self.attempt,
                "max_parse_retries": self.retries,
                "adapter": self.adapter.name,
                "parse_error": describe_parse_error(error, self.signature)[:_EVENT_ERROR_CHARS],
                "outcome": outcome,
            },
        )

    def give_up(self, error: AdapterParseError) -> AdapterParseError:
        """The error to raise once every attempt failed, saying how many were made."""
        if self.attempt:
            error.context["parse_retries"] = self.attempt
        return error

    def run(self, lm: Any, error: AdapterParseError) -> list[dict[str, Any]]:
        """Ask again until a reply parses; raise the last parse error when retries run out."""
        while (messages := self.next_messages(error)) is not None:
            try:
                outputs = lm(messages=messages, **self.lm_kwargs)
                parsed = self.adapter._parse_outputs(self.signature, outputs)
            except AdapterParseError as again:
                self.record(error, "failed")
                error = again
                continue
            except Exception as exc:
                self.record(error, f"error: {type(exc).__name__}")
                raise
            self.record(error, "parsed")
            return parsed
        raise self.give_up(error)

    async def arun(self, lm: Any, error: AdapterParseError) -> list[dict[str, Any]]:
        """Async twin of :meth:`run`, calling ``lm.acall``."""
        while (messages := self.next_messages(error)) is not None:
            try:
                outputs = await lm.acall(messages=messages, **self.lm_kwargs)
                parsed = self.adapter._parse_outputs(self.signature, outputs)
            except AdapterParseError as again:
                self.record(error, "failed")
                error = again
                continue
            except Exception as exc:
                self.record(error, f"error: {type(exc).__name__}")
                raise
            self.record(error, "parsed")
            return parsed
        raise self.give_up(error)
