"""``File``: a document input (PDF ...), rendered as an OpenAI ``file`` content part as DSPy 3.4.1 does."""

from __future__ import annotations

import base64
import mimetypes
import os
from typing import Any

import pydantic

from dspyq.core.custom_types import Type

_KEYS = ("file_data", "file_id", "filename")
_NEEDS_ONE = "Value of `dspy.File` must contain at least one of: file_data, file_id, or filename"


def encode_file_to_dict(source: Any) -> dict[str, Any]:
    """``file_data``/``file_id``/``filename`` for bytes, a data URI, a dict or a File."""
    if isinstance(source, File):
        return {key: getattr(source, key) for key in _KEYS if getattr(source, key) is not None}
    if isinstance(source, dict):
        if any(key in source for key in _KEYS):
            return source
        raise ValueError(_NEEDS_ONE)
    if isinstance(source, str):
        if source.startswith("data:"):
            return {"file_data": source}
        raise ValueError(
            f"String file inputs must be data URIs, received: {source}. "
            "Load local files with File.from_path()."
        )
    if isinstance(source, bytes):
        return {"file_data": File.from_bytes(source).file_data}
    raise ValueError(f"Unsupported file input type: {type(source)}")


class File(Type):
    """A file input: a data URI (``file_data``), a provider ``file_id`` and/or a ``filename``."""

    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None

    model_config = pydantic.ConfigDict(
        frozen=True, str_strip_whitespace=True, validate_assignment=True, extra="forbid"
    )

    def __init__(self, *args: Any, **data: Any) -> None:
        if len(args) > 1:
            raise TypeError(f"File expected at most 1 positional argument, received {len(args)}")
        if args:
            normalized = dict(encode_file_to_dict(args[0]))
            overlap = sorted(set(normalized) & set(data))
            if overlap:
                raise TypeError(
                    f"File received {', '.join(overlap)} from both the positional source and "
                    "keyword arguments"
                )
            data = {**normalized, **data}
        super().__init__(**data)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _validate_input(cls, values: Any) -> Any:
        return encode_file_to_dict(values)

    def format(self) -> list[dict[str, Any]]:
        part = {key: getattr(self, key) for key in _KEYS if getattr(self, key)}
        return [{"type": "file", "file": part}]

    @classmethod
    def from_path(
        cls, file_path: str, filename: str | None = None, mime_type: str | None = None
    ) -> File:
        """Read a local file (its name and MIME type guessed unless given)."""
        if not os.path.isfile(file_path):
            raise ValueError(f"File not found: {file_path}")
        with open(file_path, "rb") as handle:
            payload = handle.read()
        mime_type = mime_type or mimetypes.guess_type(file_path)[0] or "application/octet-stream"
        return cls.from_bytes(payload, filename or os.path.basename(file_path), mime_type)

    @classmethod
    def from_bytes(
        cls,
        file_bytes: bytes,
        filename: str | None = None,
        mime_type: str = "application/octet-stream",
    ) -> File:
        encoded = base64.b64encode(file_bytes).decode("utf-8")
        return cls(file_data=f"data:{mime_type};base64,{encoded}", filename=filename)

    @classmethod
    def from_file_id(cls, file_id: str, filename: str | None = None) -> File:
        return cls(file_id=file_id, filename=filename)

    def __str__(self) -> str:
        return str(self.serialize_model())

    def __repr__(self) -> str:
        parts = []
        if self.file_data is not None:
            data = self.file_data
            size = len(data.split("base64,")[1]) if "base64," in data else len(data)
            if data.startswith("data:"):
                parts.append(
                    f"file_data=<DATA_URI({data.split(';')[0].split(':')[1]}, {size} chars)>"
                )
            else:
                parts.append(f"file_data=<DATA({len(data)} chars)>")
        if self.file_id is not None:
            parts.append(f"file_id='{self.file_id}'")
        if self.filename is not None:
            parts.append(f"filename='{self.filename}'")
        return f"File({', '.join(parts)})"
