"""Adapters: how a signature, demos and inputs become chat messages, and completions become values."""

from dspyq.adapters.base import Adapter
from dspyq.adapters.chat import ChatAdapter
from dspyq.adapters.json_adapter import JSONAdapter
from dspyq.adapters.two_step import TwoStepAdapter
from dspyq.adapters.values import format_field_value, parse_value, serialize_for_json
from dspyq.adapters.xml_adapter import XMLAdapter

__all__ = [
    "Adapter",
    "ChatAdapter",
    "JSONAdapter",
    "TwoStepAdapter",
    "XMLAdapter",
    "format_field_value",
    "parse_value",
    "serialize_for_json",
]
