"""One check shared by the encoders that send values to workers: is this JSON?"""

from __future__ import annotations

import json
from typing import Any

from dspyq.errors import InputError


def require_json(value: Any, what: str, where: str) -> None:
    """InputError ``"{what} ... not JSON"`` (context: ``where``) unless ``value`` is JSON."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} not JSON ({exc}).", context={"argument": where}) from None
