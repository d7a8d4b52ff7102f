"""CodeAct: an agent whose actions are Python snippets run in a sandboxed interpreter.

DSPy 3.4.1's loop and prompts: the tools' source is defined in the interpreter first;
each turn a ``Predict`` writes ``generated_code`` (and says whether it is ``finished``),
the code runs, and its output or error joins the trajectory; finally a ChainOfThought
reads the trajectory to produce the signature's outputs. It is a :class:`ReAct` (trajectory
formatting and truncation) and a :class:`ProgramOfThought` (code parsing, execution and
the interpreter's lifetime), as in DSPy.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from dspyq.core.chain_of_thought import ChainOfThought
from dspyq.core.example import Prediction
from dspyq.core.module import Module
from dspyq.core.predict import Predict, ensure_signature
from dspyq.core.program_of_thought import (
    ProgramOfThought,
    _check_code_module,
    _refuse_interpreter_keyword,
)
from dspyq.core.react import ReAct, Tool
from dspyq.core.signature import InputField, OutputField, Signature, make_signature
from dspyq.interpreter import PythonInterpreter

_CODE_DESC = "Python code that when executed, produces output relevant to answering the question"


class CodeAct(ReAct, ProgramOfThought):
    """``CodeAct("n -> factorial", tools=[factorial])(n=5)``: solves a task by writing code.

    Tools must be plain functions: their source is defined in the interpreter.
    """

    def __init__(
        self,
        signature: str | type[Signature],
        tools: list[Callable[..., Any]],
        max_iters: int = 5,
        interpreter_factory: Callable[[], Any] = PythonInterpreter,
    ) -> None:
        Module.__init__(self)
        _check_code_module("CodeAct", interpreter_factory)
        self.signature = signature = ensure_signature(signature)
        self.max_iters = max_iters
        self.history: list[Any] = []

        wrapped = [tool if isinstance(tool, Tool) else Tool(tool) for tool in tools]
        if any(not inspect.isfunction(tool.func) for tool in wrapped):
            raise ValueError("CodeAct only accepts functions and not callable objects.")
        self.tools: dict[str, Tool] = {tool.name: tool for tool in wrapped}

        instructions = "\n".join(self._build_instructions(signature, self.tools))
        codeact_signature = (
            make_signature(dict(signature.input_fields), instructions)
            .append("trajectory", InputField(), type_=str)
            .append("generated_code", OutputField(desc=_CODE_DESC), type_=str)
            .append(
                "finished",
                OutputField(desc="a boolean flag to determine if the process is done"),
                type_=bool,
            )
        )
        extract_signature = make_signature(
            {**signature.input_fields, **signature.output_fields}, signature.instructions
        ).append("trajectory", InputField(), type_=str)

        self.codeact = Predict(codeact_signature)
        self.extractor = ChainOfThought(extract_signature)
        self._interpreter_factory = interpreter_factory

    def _build_instructions(self, signature: type[Signature], tools: dict[str, Tool]) -> list[str]:
        instructions = [f"{signature.instructions}\n"] if signature.instructions else []
        inputs = ", ".join(f"`{name}`" for name in signature.input_fields)
        outputs = ", ".join(f"`{name}`" for name in signature.output_fields)
        instructions.append(
            f"You are an intelligent agent. For each episode, you will receive the fields {inputs} as input.\n"
            f"Your goal is to generate executable Python code that collects any necessary information for producing {outputs}.\n"
            "For each iteration, you will generate a code snippet that either solves the task or progresses towards the solution.\n"
            "Ensure any output you wish to extract from the code is printed to the console. The code should be enclosed in a fenced code block.\n"
            f"When all information for producing the outputs ({outputs}) are available to be extracted, mark `finished=True` besides the final Python code.\n"
            "You have access to the Python Standard Library and the following functions:"
        )
        instructions += [f"({index + 1}) {tool}" for index, tool in enumerate(tools.values())]
        return instructions

    def forward(self, interpreter: Any = None, /, **kwargs: Any) -> Prediction:
        _refuse_interpreter_keyword(kwargs, self.signature.input_fields)
        with self._interpreter_context(interpreter) as running:
            for tool in self.tools.values():
                running.execute(inspect.getsource(tool.func))
            trajectory: dict[str, Any] = {}
            max_iters = kwargs.pop("max_iters", self.max_iters)
            for index in range(max_iters):
                # As DSPy, the turn sees the trajectory dict itself (the extractor sees it formatted).
                code_data = self.codeact(trajectory=trajectory, **kwargs)
                code, error = self._parse_code(code_data)
                if error:
                    trajectory[f"observation_{index}"] = (
                        f"Failed to parse the generated code: {error}"
                    )
                    continue
                trajectory[f"generated_code_{index}"] = code
                output, error = self._execute_code(code, running)
                if not error:
                    trajectory[f"code_output_{index}"] = output
                else:
                    trajectory[f"observation_{index}"] = (
                        f"Failed to execute the generated code: {error}"
                    )
                if code_data.finished:
                    break
            extract = self._call_with_truncation(self.extractor, trajectory, **kwargs)
            return Prediction(trajectory=trajectory, **extract)

    async def aforward(self, interpreter: Any = None, /, **kwargs: Any) -> Prediction:
        # ReAct's async loop drives ``self.react``, which CodeAct has not: run this one in a thread.
        result: Prediction = await Module.aforward(self, interpreter, **kwargs)
        return result
