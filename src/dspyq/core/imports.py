"""Import paths (``"package.module:Qual.Name"``) for code that crosses the queue by name.

Programs, ReAct tools, reward functions and metrics travel as import paths and are
resolved on the worker. When allowed module prefixes are configured
(``DSPYQ_ALLOWED_IMPORTS='["myapp"]'``), a path outside them is refused before anything
is imported, so a message on the queue cannot make a worker run arbitrary code.
dspyq's own modules are always allowed.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Sequence
from typing import Any

from dspyq.errors import ConfigurationError, InputError

ALWAYS_ALLOWED = ("dspyq",)
"""Module prefixes a worker may always import from, whatever is configured."""


def import_path_of(obj: Any, what: str) -> str:
    """The import path of a module-level class or function, checked to resolve to ``obj``.

    ``what`` names the object in the error (``"the argument `tools[0]` of ReAct"``). Raises
    InputError for lambdas, closures, methods of local objects and anything defined in
    ``__main__`` or inside a function, because a worker could not import them.
    """
    is_class = isinstance(obj, type)
    if is_class:
        fix = (
            "Define the class at the top level of an importable module (e.g. myapp/programs.py) "
            "and import it from there."
        )
    else:
        fix = "Use a module-level function of an importable module instead."
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise InputError(
            f"{what[:1].upper()}{what[1:]} ({obj!r}) has no import path, so a worker cannot rebuild it. {fix}",
            context={"argument": what},
        )
    if getattr(obj, "__name__", None) == "<lambda>":
        problem = "is a lambda"
    elif "<locals>" in qualname:
        problem = "is defined inside a function (a closure or local class)"
    elif module == "__main__":
        problem = "is defined in __main__ (the script being run), which a worker cannot import"
    else:
        path = f"{module}:{qualname}"
        try:
            found = resolve_import(path, allowed_prefixes=[module])
        except (ConfigurationError, InputError):
            found = None
        # ``==`` and not ``is``: each access to a classmethod builds a new bound method.
        if found is obj or (found is not None and found == obj):
            return path
        problem = (
            f"is not reachable at its import path {path!r} "
            "(a method of an object, or a decorated or shadowed name)"
        )
    raise InputError(
        f"{what[:1].upper()}{what[1:]} ({qualname}) {problem}, so a worker cannot import it. {fix}",
        context={"argument": what, "qualname": qualname, "module": module},
    )


def is_allowed(module_name: str, allowed_prefixes: Sequence[str] | None) -> bool:
    """Whether ``module_name`` is one of ``allowed_prefixes`` or inside one (``None``: any)."""
    if allowed_prefixes is None:
        return True
    return any(
        module_name == prefix or module_name.startswith(prefix + ".")
        for prefix in (*ALWAYS_ALLOWED, *allowed_prefixes)
    )


def configured_prefixes(allowed_prefixes: Sequence[str] | None) -> Sequence[str] | None:
    """``allowed_prefixes`` if given, else the ``allowed_imports`` setting (unset: any)."""
    if allowed_prefixes is not None:
        return allowed_prefixes
    from dspyq.settings import get_settings

    return get_settings().allowed_imports


def check_import_path(path: str, allowed_prefixes: Sequence[str] | None = None) -> tuple[str, str]:
    """Split ``"module:attr.sub"`` and check it is allowed, without importing anything.

    ``allowed_prefixes=None`` uses the ``allowed_imports`` setting.
    """
    module_name, _, qualname = path.partition(":")
    parts = [*module_name.split("."), *qualname.split(".")]
    if not module_name or not qualname or not all(part.isidentifier() for part in parts):
        raise InputError(
            f"Import path {path!r} is malformed; expected 'package.module:Name' "
            "(e.g. 'myapp.tools:search').",
            context={"path": path},
        )
    prefixes = configured_prefixes(allowed_prefixes)
    if not is_allowed(module_name, prefixes):
        raise ConfigurationError(
            f"Import path {path!r} is refused: module {module_name!r} is outside the allowed "
            f"imports {sorted({*ALWAYS_ALLOWED, *(prefixes or ())})}. Add its package to "
            "DSPYQ_ALLOWED_IMPORTS on this worker if it is trusted.",
            context={"path": path, "allowed_imports": list(prefixes or ())},
        )
    return module_name, qualname


def resolve_import(path: str, allowed_prefixes: Sequence[str] | None = None) -> Any:
    """The object named by ``"module:attr.sub"``, imported on this process.

    ``allowed_prefixes=None`` uses the ``allowed_imports`` setting (unset: anything
    importable). A refused path raises ConfigurationError before any import; a path that
    does not import raises ConfigurationError naming it (the worker lacks that code).
    """
    module_name, qualname = check_import_path(path, allowed_prefixes)
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"Cannot import {path!r}: {exc}. Is its package installed (and on the path) "
            "in this process?",
            context={"path": path},
        ) from exc
    except Exception as exc:  # the module's own top-level code failed
        raise ConfigurationError(
            f"Importing module {module_name!r} for {path!r} failed: {type(exc).__name__}: {exc}",
            context={"path": path},
        ) from exc
    for part in qualname.split("."):
        if isinstance(value, types.ModuleType) and value.__name__ != module_name:
            # Walking into another module would bypass the allowed prefixes.
            raise ConfigurationError(
                f"Import path {path!r} reaches into module {value.__name__!r}; name the "
                "object by its own module instead.",
                context={"path": path},
            )
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ConfigurationError(
                f"Cannot resolve {path!r}: module {module_name!r} has no attribute {qualname!r}. "
                "Does this process run the same version of the code as the sender?",
                context={"path": path},
            ) from None
    # A module has no __module__; its own name tells where it comes from.
    defined_in = value.__name__ if isinstance(value, types.ModuleType) else None
    defined_in = defined_in or getattr(value, "__module__", None)
    if isinstance(defined_in, str) and not is_allowed(
        defined_in, configured_prefixes(allowed_prefixes)
    ):
        raise ConfigurationError(
            f"Import path {path!r} resolves to an object defined in {defined_in!r}, outside "
            "the allowed imports; name it by a path inside an allowed package.",
            context={"path": path, "defined_in": defined_in},
        )
    return value
