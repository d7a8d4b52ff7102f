"""Saved program state in DSPy 3.4.1's JSON format, read and written.

A saved program is ``{<predictor path>: <predictor state>, ..., "metadata": {...}}``
where each predictor state holds ``traces``, ``train``, ``demos``, ``signature``
(instructions plus prefix/description per field, by position) and ``lm``. Writing the
same keys and metadata DSPy writes lets a program saved by one load in the other.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from dspyq.errors import DspyqError, StateError, StateNotFoundError, StatePathError

logger = logging.getLogger(__name__)

DSPY_COMPAT_VERSION = "3.4.1"
"""The DSPy release whose saved-state format dspyq reads and writes."""

_CLOUDPICKLE_VERSION = "3.1"

# LM settings that choose where requests (and keys) go: a state file must not be able
# to redirect them unless the user says they trust the file.
UNSAFE_LM_KEYS = frozenset({"api_base", "base_url", "model_list", "api_key"})


class FieldState(BaseModel):
    """One signature field as saved: only its prompt text, never its name or type."""

    model_config = ConfigDict(extra="allow")

    prefix: str
    description: str


class SignatureState(BaseModel):
    model_config = ConfigDict(extra="allow")

    instructions: str
    fields: list[FieldState]


class PredictorState(BaseModel):
    """The saved state of one ``Predict``."""

    model_config = ConfigDict(extra="allow")

    traces: list[Any] = []
    train: list[Any] = []
    demos: list[dict[str, Any]] = []
    signature: SignatureState
    lm: dict[str, Any] | None = None


def dependency_versions() -> dict[str, str]:
    """The ``metadata.dependency_versions`` block, with the key names DSPy checks."""
    return {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "dspy": DSPY_COMPAT_VERSION,
        "cloudpickle": _CLOUDPICKLE_VERSION,
    }


def validate_predictor_state(name: str, state: Any) -> PredictorState:
    """Check one predictor's saved state, raising a StateError that names the predictor."""
    try:
        return PredictorState.model_validate(state)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise StateError(
            f"Saved state for predictor {name!r} is malformed: {problems}",
            context={"predictor": name},
        ) from exc


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` (a module's ``dump_state()``) plus metadata as pretty JSON."""
    if path.suffix != ".json":
        raise StatePathError(
            f"`path` must end with `.json` or `.pkl` when `save_program=False`, but received: {path}"
        )
    document = {**state, "metadata": {"dependency_versions": dependency_versions()}}
    try:
        text = json.dumps(document, indent=2, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise StateError(f"Program state is not JSON-serialisable: {exc}") from exc
    path.write_text(text + "\n", encoding="utf-8")


def read_state(path: Path) -> dict[str, Any]:
    """Read a saved program and check its metadata; returns the state without metadata.

    Whether the state fits a program is checked when it is applied (``load_state``).
    """
    if path.suffix != ".json":
        raise StatePathError(f"`path` must end with `.json` or `.pkl`, but received: {path}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        # DSPy lets open() raise: the same class and text, as a StateError too.
        raise StateNotFoundError(str(exc)) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateError(f"{path} is not a readable JSON program state: {exc}") from exc
    if not isinstance(document, dict):
        raise StateError(f"{path} does not hold a program state (expected a JSON object)")
    metadata = document.pop("metadata", None)
    check_metadata(metadata, source=str(path))
    return document


def check_metadata(metadata: Any, source: str = "saved state") -> None:
    """Warn (only) when the state was saved with other versions than this process has."""
    if not isinstance(metadata, dict) or not isinstance(metadata.get("dependency_versions"), dict):
        logger.warning("%s has no dependency_versions metadata; loading it anyway", source)
        return
    saved: dict[str, Any] = metadata["dependency_versions"]
    ours = dependency_versions()
    for key in ("python", "dspy"):
        if key in saved and str(saved[key]) != ours[key]:
            logger.warning(
                "%s was saved with %s %s but this process has %s %s; "
                "the program may behave differently",
                source,
                key,
                saved[key],
                key,
                ours[key],
            )


def lm_from_state(lm_state: Mapping[str, Any], allow_unsafe_lm_state: bool = False) -> Any:
    """Rebuild an LM from its saved form (DSPy's or dspyq's).

    Endpoint settings (``api_base`` ...) are dropped unless ``allow_unsafe_lm_state``;
    an API key is never taken from a file.
    """
    from dspyq.lm import LM

    unsafe = sorted(key for key in UNSAFE_LM_KEYS if key in lm_state)
    if unsafe and not allow_unsafe_lm_state:
        logger.warning(
            "Ignoring %s from a saved LM state (pass allow_unsafe_lm_state=True to trust it)",
            ", ".join(unsafe),
        )
    safe_state = {key: value for key, value in lm_state.items() if key != "api_key"}
    try:
        return LM.from_state(safe_state, allow_unsafe_lm_state=allow_unsafe_lm_state)
    except DspyqError as exc:
        raise StateError(
            f"Saved LM state cannot be rebuilt: {exc.message}", context={"lm": dict(safe_state)}
        ) from exc
