"""Adapters: how a signature, demos and inputs become chat messages, and completions become values."""

from dspyq.adapters.base import Adapter
from dspyq.adapters.chat import ChatAdapter
from dspyq.adapters.json_adapter import JSONAdapter
from dspyq.adapters.values import format_field_value, parse_value, serialize_for_json

__all__ = [
    "Adapter",
    "ChatAdapter",
    "JSONAdapter",
    "format_field_value",
    "parse_value",
    "serialize_for_json",
]
