"""Signature errors that are also the builtin exception DSPy 3.4.1 raises in the same place.

DSPy raises ``ValueError`` for a malformed string signature, ``TypeError`` for a class
field not declared with InputField/OutputField and lets ``SyntaxError`` through for a
field list Python cannot parse. dspyq raises :class:`~dspyq.errors.SignatureError`
there too, as one of these subclasses, so both ``except SignatureError`` and DSPy's
``except ValueError`` catch it. Across the queue they travel as ``SignatureError``.
"""

from __future__ import annotations

from typing import Any

from dspyq.errors import SignatureError


class _TravelsAsSignatureError(SignatureError):
    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["type"] = "SignatureError"
        return data


class SignatureValueError(_TravelsAsSignatureError, ValueError):
    """A malformed signature where DSPy raises ValueError."""


class SignatureTypeError(_TravelsAsSignatureError, TypeError):
    """A malformed signature class where DSPy raises TypeError."""


class SignatureSyntaxError(_TravelsAsSignatureError, SyntaxError):
    """A string signature Python cannot parse, where DSPy lets SyntaxError through."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.msg = message  # what SyntaxError.__str__ shows
