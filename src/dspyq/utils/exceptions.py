"""``dspyq.utils.exceptions``: where DSPy programs import their error classes from."""

from dspyq import errors, lm_errors
from dspyq.lm_errors import *  # noqa: F403  (DSPy's LM error classes, as lm_errors lists them)

AdapterParseError = errors.AdapterParseError
# The context-window error a program catches is the package's own: it derives from
# lm_errors' class of the same name, and it is what the LM clients raise.
ContextWindowExceededError = errors.ContextWindowExceededError  # type: ignore[assignment,misc]

__all__ = ["AdapterParseError", *lm_errors.__all__]
