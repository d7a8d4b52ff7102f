"""ProgramOfThought: the LM writes Python, a sandboxed interpreter runs it, the LM answers from the output.

DSPy 3.4.1's loop and prompts: generate code (ChainOfThought), run it; on an error,
regenerate from the previous code and error, up to ``max_iters`` attempts in all
(then ``RuntimeError``); finally a third ChainOfThought turns the code and its output
into the signature's outputs. Code runs in :class:`dspyq.PythonInterpreter` (a local
sandboxed subprocess, not DSPy's Deno sandbox: see :mod:`dspyq.interpreter.python`).
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dspyq.core.chain_of_thought import ChainOfThought
from dspyq.core.module import Module
from dspyq.core.predict import ensure_signature
from dspyq.core.signature import InputField, OutputField, Signature, make_signature
from dspyq.interpreter import CodeExecutionError, FinalOutput, PythonInterpreter

logger = logging.getLogger(__name__)

_CODE_DESC = "python code that answers the question"


def _check_code_module(name: str, interpreter_factory: Any) -> None:
    """Warn, as DSPy does, that the code-running module ``name`` is deprecated; check the factory."""
    warnings.warn(
        f"{name} is deprecated and will be removed in 3.5. RLM is the preferred replacement.",
        DeprecationWarning,
        stacklevel=3,
    )
    if not callable(interpreter_factory):
        raise TypeError("interpreter_factory must be a zero-argument callable")


def _refuse_interpreter_keyword(kwargs: dict[str, Any], input_fields: Any) -> None:
    if "interpreter" in kwargs and "interpreter" not in input_fields:
        raise TypeError(
            "To use a caller-owned interpreter, pass it as the first positional argument when calling the module."
        )


class ProgramOfThought(Module):
    """``ProgramOfThought("question -> answer")(question=...)``: answers by running code."""

    def __init__(
        self,
        signature: str | type[Signature],
        max_iters: int = 3,
        interpreter_factory: Callable[[], Any] = PythonInterpreter,
    ) -> None:
        super().__init__()
        _check_code_module("ProgramOfThought", interpreter_factory)
        self.signature = ensure_signature(signature)
        self.max_iters = max_iters
        self.input_fields = self.signature.input_fields
        self.output_fields = self.signature.output_fields
        self.code_generate = ChainOfThought(self._mode_signature("generate"))
        self.code_regenerate = ChainOfThought(self._mode_signature("regenerate"))
        self.generate_output = ChainOfThought(self._mode_signature("answer"))
        self._interpreter_factory = interpreter_factory

    def _mode_fields(self, mode: str) -> dict[str, Any]:
        fields: dict[str, Any] = dict(self.input_fields)
        if mode == "regenerate":
            fields["previous_code"] = InputField(
                desc="previously-generated python code that errored"
            )
            fields["error"] = InputField(desc="error message from previously-generated python code")
        if mode in ("generate", "regenerate"):
            fields["generated_code"] = OutputField(desc=_CODE_DESC)
        else:
            fields["final_generated_code"] = InputField(desc=_CODE_DESC)
            fields["code_output"] = InputField(desc="output of previously-generated python code")
            fields.update(self.signature.output_fields)
        return fields

    def _mode_signature(self, mode: str) -> type[Signature]:
        fields = make_signature(self._mode_fields(mode))
        inputs = ", ".join(f"`{name}`" for name in fields.input_fields)
        outputs = ", ".join(f"`{name}`" for name in fields.output_fields)
        finals = ", ".join(f"`{name}`" for name in self.output_fields)
        if mode == "generate":
            lines = [
                f"You will be given {inputs} and you will respond with {outputs}.",
                f"Generating executable Python code that programmatically computes the correct {outputs}.",
                "After you're done with the computation and think you have the final output, make sure to submit your output by calling the preloaded function `SUBMIT()`.",
                f'You must structure your output in a dict, like {{"field_a": value_a, ...}}, with the correct value mapping for the field(s): {finals}.',
            ]
        elif mode == "regenerate":
            lines = [
                f"You are given {inputs} due to an error in previous code.",
                "Your task is to correct the error and provide the new `generated_code`.",
            ]
        else:
            lines = [f"Given the final code {inputs}, provide the final {outputs}."]
        return make_signature(self._mode_fields(mode), "\n".join(lines))

    @staticmethod
    def _parse_code(code_data: Any) -> tuple[str, str | None]:
        """(code, error): the first fenced block (or the text), ending in its last assigned name."""
        code = code_data.get("generated_code", "").split("---", 1)[0].split("\n\n\n", 1)[0]
        match = re.search(r"```python[ \n](.*?)[ \n]```?", code, re.DOTALL)
        block = match.group(1) if match else code
        if not block:
            return code, "Error: Empty code after parsing."
        if "\n" not in block and block.count("=") > 1:
            return code, "Error: Code format is not correct."
        last_assigned = re.match(r"^(\w+)\s*=", block.split("\n")[-1].strip())
        if last_assigned:
            block += "\n" + last_assigned.group(1)
        return block, None

    @staticmethod
    def _execute_code(code: str, interpreter: Any) -> tuple[str | None, str | None]:
        if not code:
            return None, "Error: Empty code before execution."
        try:
            result = interpreter.execute(code)
        except (CodeExecutionError, SyntaxError) as exc:
            return None, str(exc)
        if isinstance(result, FinalOutput):
            result = result.output
        return json.dumps(result), None

    @contextmanager
    def _interpreter_context(self, interpreter: Any) -> Iterator[Any]:
        """The caller's interpreter as is, or a fresh one from the factory, shut down after."""
        if interpreter is not None:
            yield interpreter
            return
        owned = self._interpreter_factory()
        try:
            yield owned
        finally:
            owned.shutdown()

    def forward(self, interpreter: Any = None, /, **kwargs: Any) -> Any:
        _refuse_interpreter_keyword(kwargs, self.input_fields)
        with self._interpreter_context(interpreter) as running:
            return self._run(running, kwargs)

    def _run(self, interpreter: Any, kwargs: dict[str, Any]) -> Any:
        inputs = {name: kwargs[name] for name in self.input_fields}
        code, error = self._parse_code(self.code_generate(**inputs))
        output = None
        if not error:
            output, error = self._execute_code(code, interpreter)
        hop = 1
        while error is not None:
            logger.error(f"Error in code execution: {error}")
            if hop == self.max_iters:
                raise RuntimeError(f"Max hops reached. Failed to run ProgramOfThought: {error}")
            inputs.update(previous_code=code, error=error)
            code, error = self._parse_code(self.code_regenerate(**inputs))
            if not error:
                output, error = self._execute_code(code, interpreter)
            hop += 1
        inputs.update(final_generated_code=code, code_output=output)
        return self.generate_output(**inputs)
