"""Pickled saves, as DSPy's: ``save(dir, save_program=True)``, ``save("x.pkl")`` and
:func:`load`.

A pickle can run arbitrary code when read, so reading one needs ``allow_pickle=True``
(refused with a ``ValueError``-compatible :class:`PickleNotAllowedError` otherwise,
DSPy's message included) and writing one logs DSPy's warning. JSON saves stay the
default and the only form that crosses the queue. cloudpickle is used when installed
(classes defined in ``__main__`` then travel by value, as in DSPy), else ``pickle``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspyq.core.state import check_metadata, dependency_versions
from dspyq.errors import StateError

if TYPE_CHECKING:
    from dspyq.core.module import Module

__all__ = ["PickleNotAllowedError", "load", "load_pickled_state", "save_pickled"]

logger = logging.getLogger(__name__)

PICKLE_WARNING = (
    "Loading untrusted .pkl files can run arbitrary code, which may be dangerous. To avoid "
    'this, prefer saving using json format using module.save("module.json").'
)


class PickleNotAllowedError(StateError, ValueError):
    """A pickle was to be read without ``allow_pickle=True`` (DSPy raises ValueError)."""


def _pickler() -> Any:
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - cloudpickle is a dependency
        import pickle

        return pickle
    return cloudpickle


def _metadata() -> dict[str, Any]:
    return {"dependency_versions": dependency_versions()}


def save_pickled(module: Module, path: Path, save_program: bool) -> None:
    """The whole program into directory ``path``, or its state into ``path`` (``.pkl``)."""
    pickler = _pickler()
    if not save_program:
        logger.warning(PICKLE_WARNING)
        state = {**module.dump_state(json_mode=False), "metadata": _metadata()}
        with path.open("wb") as handle:
            pickler.dump(state, handle)
        return
    if path.suffix:
        raise ValueError(
            "`path` must point to a directory without a suffix when `save_program=True`, "
            f"but received: {path}"
        )
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"The path '{path}' exists but is not a directory.")
    path.mkdir(parents=True, exist_ok=True)
    logger.warning(PICKLE_WARNING)
    try:
        with (path / "program.pkl").open("wb") as handle:
            pickler.dump(module, handle)
    except Exception as exc:
        raise RuntimeError(
            f"Saving failed with error: {exc}. Please remove the non-picklable attributes from "
            "your program, or consider using state-only saving by setting `save_program=False`."
        ) from exc
    (path / "metadata.json").write_text(json.dumps(_metadata(), indent=2) + "\n")


def load_pickled_state(path: Path, allow_pickle: bool) -> dict[str, Any]:
    """The state in a ``.pkl`` file saved by ``save("x.pkl")``, metadata checked and removed."""
    if not allow_pickle:
        raise PickleNotAllowedError(
            "Loading .pkl files can run arbitrary code, which may be dangerous. Prefer "
            "saving with .json files if possible. Set `allow_pickle=True` "
            "if you are sure about the source of the file and in a trusted environment."
        )
    with path.open("rb") as handle:
        state = _pickler().load(handle)
    if not isinstance(state, dict):
        raise StateError(f"{path} does not hold a program state")
    check_metadata(state.pop("metadata", None), source=str(path))
    if "demos" in state:  # a single predictor's flat state
        return dict(_plain_demos(state))
    return {name: _plain_demos(value) for name, value in state.items()}


def _plain_demos(predictor_state: Any) -> Any:
    """A pickled state keeps demos as Examples; loading checks the JSON form (dicts)."""
    from dspyq.core.example import Example

    if not isinstance(predictor_state, dict) or "demos" not in predictor_state:
        return predictor_state
    demos = [
        dict(demo.items(include_dspy=True)) if isinstance(demo, Example) else demo
        for demo in predictor_state["demos"]
    ]
    return {**predictor_state, "demos": demos}


def load(path: str | Path, allow_pickle: bool = False) -> Module:
    """A whole program saved with ``save(path, save_program=True)`` (``dspy.load``)."""
    if not allow_pickle:
        raise PickleNotAllowedError(
            "Loading with pickle is not allowed. Please set `allow_pickle=True` if you are "
            "sure you trust the source of the model."
        )
    directory = Path(path)
    if not directory.exists():
        raise FileNotFoundError(f"The path '{directory}' does not exist.")
    metadata = json.loads((directory / "metadata.json").read_text())
    check_metadata(metadata, source=str(directory))
    with (directory / "program.pkl").open("rb") as handle:
        program: Module = _pickler().load(handle)
    return program
