"""``StreamListener``: the streamed text of one output field of one predictor.

As DSPy 3.4.1's ``dspy.streaming.StreamListener``. The listener reads the LM's text
chunks of its predictor, waits for the field's header (``[[ ## answer ## ]]``,
``"answer":`` or ``<answer>`` depending on the adapter) and hands on the text that
follows as :class:`StreamResponse` chunks, holding back the last few chunks while
they could still be the next field's header so that no adapter markup reaches the
user. Chunk boundaries, stripping and the last-chunk flag follow DSPy's rules, so the
same LM stream gives the same ``StreamResponse`` sequence.
"""

from __future__ import annotations

import re
from collections import defaultdict
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from dspyq.core.context import context, current
from dspyq.core.stream_messages import StreamResponse

__all__ = ["StreamListener", "find_predictor_for_stream_listeners", "stream_scope"]

SUPPORTED_ADAPTERS = ("ChatAdapter", "XMLAdapter", "JSONAdapter")
HELD_CHUNKS = 10  # chunks kept back at most while they might open the next field


@dataclass(frozen=True)
class _Markers:
    start: str  # the field's header
    end: re.Pattern[str]  # what ends the field's value
    opener: str  # a chunk holding this may begin the header
    end_prefixes: tuple[str, ...]  # held text ending so might become the end marker
    end_inside: str  # held text holding this might be the end marker


def _markers(adapter: str, field: str) -> _Markers:
    if adapter == "JSONAdapter":
        return _Markers(f'"{field}":', re.compile(r"\w*\"(,|\s*})"), '"',
                        ('"', '",', '" ', '"}'), "}")  # fmt: skip
    if adapter == "XMLAdapter":
        return _Markers(f"<{field}>", re.compile(rf"</{field}>"), "<", ("<", "</"), "</")
    return _Markers(f"[[ ## {field} ## ]]", re.compile(r"\[\[ ## (\w+) ## \]\]"), "[",
                    ("[", "[[", "[[ ", "[[ #", "[[ ##"), "[[ ##")  # fmt: skip


def adapter_name(adapter: Any) -> str:
    """The adapter's class name, checked: the listener knows these three formats only."""
    name = type(adapter).__name__ if adapter is not None else "ChatAdapter"
    if name not in SUPPORTED_ADAPTERS:
        raise ValueError(
            f"Unsupported adapter for streaming: {name}, please use one of the following "
            f"adapters: {', '.join(SUPPORTED_ADAPTERS)}"
        )
    return name


class StreamListener:
    """Listen to ``signature_field_name`` of ``predict`` (found by :func:`streamify` when
    not given); ``allow_reuse`` listens again each time the predictor runs."""

    def __init__(
        self,
        signature_field_name: str,
        predict: Any = None,
        predict_name: str | None = None,
        allow_reuse: bool = False,
    ) -> None:
        self.signature_field_name = signature_field_name
        self.predict = predict
        self.predict_name = predict_name
        self.allow_reuse = allow_reuse
        self._reset()

    def _reset(self) -> None:
        self.stream_start = False  # the header was seen
        self.stream_end = False  # the value is over
        self.cache_hit = False  # the whole answer came in one chunk
        self._opening: list[str] = []  # chunks that may be forming the header
        self._held: list[str] = []  # value text not handed on yet
        self._json_text = ""  # for JSON: ``{`` + the header + everything since
        self._value_started = False
        self._held_space = ""  # trailing whitespace kept until more text follows

    def receive(self, chunk: str | None, adapter: Any = None) -> StreamResponse | None:
        """Take one chunk of the LM's text; return the field's next piece, if one is ready."""
        kind = adapter_name(adapter)
        marks = _markers(kind, self.signature_field_name)
        if self.stream_end:
            if not self.allow_reuse:
                return None
            self._reset()
        if chunk is None:
            return None
        if chunk and marks.start in chunk and kind != "JSONAdapter":
            rest = chunk[chunk.find(marks.start) + len(marks.start) :]
            if marks.end.search(rest):  # a cached or one-chunk answer: nothing to stream
                self.cache_hit = self.stream_start = self.stream_end = True
                return None
        if not self.stream_start:
            started = self._look_for_header(chunk, marks, kind)
            if started is None:
                return None
            chunk = started
        if not chunk:
            return None
        self._held.append(chunk)
        token = None
        held = "".join(self._held).strip()
        if not (held.endswith(marks.end_prefixes) or marks.end_inside in held):
            token = self._flush(kind)
        elif len(self._held) > HELD_CHUNKS:
            token = self._held.pop(0)
        if kind == "JSONAdapter":
            return self._json_piece(token, chunk)
        return self._text_piece(token, marks, kind)

    def _look_for_header(self, chunk: str, marks: _Markers, kind: str) -> str | None:
        """The text after the header once it is complete, else None (still looking)."""
        if not self._opening:
            if marks.opener in chunk:
                self._opening.append(chunk)
            return None
        self._opening.append(chunk)
        text = "".join(self._opening)
        if marks.start in text:
            self.stream_start = True
            self._opening = []
            if kind == "JSONAdapter":  # parsed as an object, so the next key shows the end
                self._json_text += "{" + marks.start
            return text[text.find(marks.start) + len(marks.start) :].lstrip()
        if not _ends_with_part_of(text.strip(), marks.start):
            self._opening = []
        return None

    def _text_piece(self, token: str | None, marks: _Markers, kind: str) -> StreamResponse | None:
        if marks.end.search("".join(self._held).strip()):
            self.stream_end = True
            token = ((token or "") + self._flush(kind)).rstrip()
        # The parsed value is stripped: leading space is dropped, trailing space waits.
        if token and not self._value_started:
            token = token.lstrip()
        if token:
            stripped = token.rstrip()
            if stripped:
                self._value_started = True
                token, self._held_space = self._held_space + stripped, token[len(stripped) :]
            else:
                self._held_space += token
                token = ""
        return self._response(token) if token or self.stream_end else None

    def _json_piece(self, token: str | None, chunk: str) -> StreamResponse | None:
        import jiter

        self._json_text += chunk
        data = self._json_text.encode("utf-8")
        if self._json_text.rstrip().endswith("}"):
            try:
                jiter.from_json(data)  # the whole object is complete: the value is over
            except ValueError:
                pass
            else:
                self.stream_end = True
                rest = self._flush("JSONAdapter")
                return self._response((token or "") + rest[: rest.rfind("}")])
        try:
            parsed = jiter.from_json(data, partial_mode="trailing-strings")
        except ValueError:
            parsed = {}
        if len(parsed) > 1:  # the next key began
            self.stream_end = True
            rest = self._flush("JSONAdapter")
            following = next(key for key in parsed if key != self.signature_field_name)
            token = (token or "") + rest[: rest.find(following)]
        return self._response(token) if token or self.stream_end else None

    def _flush(self, kind: str) -> str:
        """Hand on the held text, cut before the adapter's markup."""
        text = "".join(self._held)
        self._held = []
        if kind == "JSONAdapter":
            return text
        cut = f"</{self.signature_field_name}>" if kind == "XMLAdapter" else "[["
        index = text.find(cut)
        return text if index == -1 else text[:index]

    def _response(self, token: Any) -> StreamResponse:
        return StreamResponse(
            self.predict_name, self.signature_field_name, token, is_last_chunk=self.stream_end
        )

    def finalize(self, adapter: Any = None) -> StreamResponse | None:
        """At the end of the program: whatever is still held, as the last chunk."""
        if self.stream_end or not self.stream_start:
            return None
        self.stream_end = True
        if not self._held:
            return None
        token = self._flush(adapter_name(adapter))
        if not token:
            return None
        return StreamResponse(
            self.predict_name, self.signature_field_name, self._held_space + token, True
        )


def _ends_with_part_of(text: str, header: str) -> bool:
    """Whether some ending of ``text`` is a beginning of ``header``."""
    return any(header.startswith(text[start:]) for start in range(len(text)))


def find_predictor_for_stream_listeners(
    program: Any, stream_listeners: list[StreamListener]
) -> dict[int, list[StreamListener]]:
    """Give each listener without a predictor the one predictor of ``program`` with its
    field; the listeners by ``id`` of the predictor they listen to."""
    wanted: dict[str, Any] = {
        listener.signature_field_name: None for listener in stream_listeners if not listener.predict
    }
    for name, predictor in program.named_predictors():
        for field in predictor.signature.output_fields:
            if field not in wanted:
                continue
            if wanted[field] is not None:
                raise ValueError(
                    f"Signature field {field} is not unique in the program, cannot automatically "
                    "determine which predictor to use for streaming. Please specify the "
                    "predictor to listen to."
                )
            wanted[field] = (name, predictor)
    by_predictor: dict[int, list[StreamListener]] = defaultdict(list)
    for listener in stream_listeners:
        if not listener.predict:
            # A field no predictor has fails to unpack: DSPy's TypeError, same message.
            listener.predict_name, listener.predict = wanted[listener.signature_field_name]
        by_predictor[id(listener.predict)].append(listener)
    return by_predictor


def stream_scope(predictor: Any) -> AbstractContextManager[Any]:
    """Where ``predictor`` calls its adapter: its LM calls stream, tagged with it, when
    streaming is on and no listener is set or one listens to it; otherwise they don't."""
    settings = current()
    if settings.get("send_stream") is None:
        return nullcontext()
    listeners = settings.get("stream_listeners") or []
    if listeners and not any(listener.predict == predictor for listener in listeners):
        return context(send_stream=None)
    return context(caller_predict=predictor)
