"""Types that signatures use as field annotations, and how their names are rendered.

``History`` is DSPy's conversation-history input type. ``annotation_name`` renders an
annotation the way DSPy 3.4.1 prints it in prompts (``list[str]``, ``Literal['a', 'b']``,
``Union[int, NoneType]``); prompts must stay byte-identical, so keep its quirks.
"""

from __future__ import annotations

import functools
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pydantic


class History(pydantic.BaseModel):
    """Past turns of a conversation, one dict per turn keyed by signature field names.

    Used as the annotation of an input field: adapters expand each turn into a user
    message (its input fields) and an assistant message (its output fields).
    """

    messages: list[dict[str, Any]]

    model_config = pydantic.ConfigDict(
        frozen=True,
        str_strip_whitespace=True,
        validate_assignment=True,
        extra="forbid",
    )


def allows_none(annotation: Any) -> bool:
    """Whether ``annotation`` admits None (``X | None``, ``Optional[X]``, ``None``)."""
    if annotation is None or annotation is type(None):
        return True
    origin = get_origin(annotation)
    if origin is Annotated:
        return bool(get_args(annotation)) and allows_none(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return any(allows_none(arg) for arg in get_args(annotation))
    return False


def quote_literal_string(text: str) -> str:
    """Quote a string member of a ``Literal`` for display, preferring single quotes."""
    has_single = "'" in text
    has_double = '"' in text
    if has_single and not has_double:
        return f'"{text}"'
    if has_double and not has_single:
        return f"'{text}'"
    if has_single and has_double:
        return "'" + text.replace("'", "\\'") + "'"
    return f"'{text}'"


def annotation_name(annotation: Any) -> str:
    """Render a type annotation as DSPy shows it in prompts."""
    origin = get_origin(annotation)
    if origin is types.UnionType:  # `int | None` is shown as Union[int, NoneType]
        origin = Union
    if origin is None:
        if _is_reasoning(annotation):  # DSPy keeps showing ChainOfThought's reasoning as str
            return "str"
        name = getattr(annotation, "__name__", None)
        return name if isinstance(name, str) else str(annotation)
    args = get_args(annotation)
    if origin is Literal:
        rendered = [
            quote_literal_string(a) if isinstance(a, str) else annotation_name(a) for a in args
        ]
    else:
        rendered = [annotation_name(a) for a in args]
    return f"{annotation_name(origin)}[{', '.join(rendered)}]"


def _is_reasoning(annotation: Any) -> bool:
    from dspyq.core.text_types import Reasoning  # custom types build on this module

    return annotation is Reasoning


@functools.lru_cache(maxsize=512)
def _cached_type_adapter(annotation: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(annotation)


def type_adapter(annotation: Any) -> pydantic.TypeAdapter[Any]:
    """A pydantic TypeAdapter for ``annotation``, cached because building one is slow."""
    try:
        return _cached_type_adapter(annotation)
    except TypeError:  # unhashable annotation (e.g. Annotated with a dict in its metadata)
        return pydantic.TypeAdapter(annotation)
