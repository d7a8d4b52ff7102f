"""PythonInterpreter: runs LM-written Python in a sandboxed subprocess (see :mod:`.python`)."""

from dspyq.interpreter.python import (
    CodeExecutionError,
    CodeInterpreterError,
    FinalOutput,
    InterpreterError,
    PythonInterpreter,
)

__all__ = [
    "CodeExecutionError",
    "CodeInterpreterError",
    "FinalOutput",
    "InterpreterError",
    "PythonInterpreter",
]
