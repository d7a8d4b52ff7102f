"""An Embedder as JSON, so programs and optimizers holding one can be sent to a worker.

The model is kept as its name (a hosted model) or the import path of its function; the
batch size, caching flag and request options as they are. An API key is refused: the
worker uses its own (``OPENAI_API_KEY``), and specs are stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dspyq.core.imports import import_path_of, resolve_import
from dspyq.core.json_check import require_json
from dspyq.errors import InputError
from dspyq.lm.embedder import Embedder

__all__ = ["embedder_from_json", "embedder_to_json"]


def embedder_to_json(embedder: Embedder, where: str) -> dict[str, Any]:
    """``embedder``'s settings as JSON; InputError (naming ``where``) when they are not."""
    model = embedder.model
    options = dict(embedder.default_kwargs)
    if "api_key" in options:
        raise InputError(
            f"The Embedder in {where} holds an api_key, which would be sent and stored with "
            "the program; leave it out (workers read OPENAI_API_KEY).",
            context={"argument": where},
        )
    require_json(options, f"The request options of the Embedder in {where} are", where)
    return {
        "model": model if isinstance(model, str) else None,
        "function": None if isinstance(model, str) else import_path_of(model, f"the {where}"),
        "batch_size": embedder.batch_size,
        "caching": embedder.caching,
        "kwargs": options,
    }


def embedder_from_json(value: Mapping[str, Any], allowed: Sequence[str] | None) -> Embedder:
    """The Embedder :func:`embedder_to_json` describes (functions imported within ``allowed``)."""
    model: Any = value.get("model")
    if model is None:
        model = resolve_import(str(value.get("function")), allowed)
    return Embedder(
        model,
        batch_size=int(value.get("batch_size", 200)),
        caching=bool(value.get("caching", True)),
        **dict(value.get("kwargs") or {}),
    )
