"""``dspyq.utils.exceptions``: where DSPy programs import ``AdapterParseError`` from."""

from dspyq.errors import AdapterParseError

__all__ = ["AdapterParseError"]
