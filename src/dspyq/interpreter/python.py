"""PythonInterpreter with DSPy 3.4.1's interface, sandboxed by a local subprocess instead of Deno.

DSPy runs code in Pyodide under Deno (WebAssembly, no host access). Deno is often not
installed, so dspyq runs a fresh ``python -I`` child (:mod:`.sandbox_child`) with a CPU
time limit and an address-space limit (``resource.setrlimit``), a wall-clock timeout
enforced by the parent, and an audit hook refusing sockets, subprocesses, ``os.system``
/ ``exec`` / ``fork`` and file writes outside ``/tmp``. That is weaker isolation than a
WebAssembly sandbox (the child is an ordinary process of the same user; an audit hook
can be evaded by determined native code), so run untrusted code in a container too.

Same interface as DSPy: ``execute(code, variables)`` / ``__call__``, the value of the
last expression (or the printed output when that is None), ``SUBMIT(x)`` returning
:class:`FinalOutput`, session state kept across calls, ``SyntaxError`` for bad syntax
and :class:`CodeExecutionError` (``"<Type>: <args>"``) for errors raised by the code.
"""

from __future__ import annotations

import json
import keyword
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from dspyq.errors import DspyqError

_CHILD = Path(__file__).with_name("sandbox_child.py")
_PROTOCOL = "\x00dspyq-sandbox\x00"


class CodeInterpreterError(DspyqError, RuntimeError):
    """The interpreter itself failed (bad setup, the sandbox died or timed out)."""

    code = 3101
    category = "data"


class CodeExecutionError(CodeInterpreterError):
    """The submitted code raised; the session is still usable."""

    code = 3102


InterpreterError = CodeInterpreterError  # the name older DSPy releases used


class FinalOutput:
    """What ``execute`` returns when the code called ``SUBMIT(...)``."""

    def __init__(self, output: Any) -> None:
        self.output = output

    def __repr__(self) -> str:
        return f"FinalOutput({self.output!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FinalOutput):
            return NotImplemented
        return bool(self.output == other.output)


def _assignment(name: str, value: Any) -> str:
    if not name.isidentifier() or keyword.iskeyword(name) or name == "json":
        raise CodeInterpreterError(f"Invalid variable name: '{name}'")
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        raise CodeInterpreterError(f"Unsupported value type: {type(value).__name__}") from None
    return f"{name} = __import__('json').loads({text!r})"


class PythonInterpreter:
    """A sandboxed Python session: ``execute(code, variables=None)`` -> value."""

    def __init__(self, timeout: float = 30.0, cpu_seconds: int = 30, memory_mb: int = 512) -> None:
        self.timeout = timeout
        self.cpu_seconds = cpu_seconds
        self.memory_mb = memory_mb
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start the child (done on first use anyway)."""
        if self._process is not None and self._process.poll() is None:
            return
        memory = self.memory_mb * 1024 * 1024 if self.memory_mb else 0
        self._process = subprocess.Popen(
            [sys.executable, "-I", str(_CHILD), str(self.cpu_seconds), str(memory)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={},
            cwd="/tmp",
        )
        self._lines = queue.Queue()
        threading.Thread(target=self._pump, args=(self._process,), daemon=True).start()

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(_PROTOCOL):
                self._lines.put(line[len(_PROTOCOL) :])
        self._lines.put(None)  # the child has exited

    def shutdown(self) -> None:
        """Stop the child; the next ``execute`` starts a fresh session."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def __enter__(self) -> PythonInterpreter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.shutdown()

    # --- running code --------------------------------------------------------------

    def __call__(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        return self.execute(code, variables)

    def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        """Run ``code`` (after assigning ``variables``) and return its result."""
        assignments = [_assignment(name, value) for name, value in (variables or {}).items()]
        source = "\n".join([*assignments, code]) if assignments else code
        self.start()
        process = self._process
        assert process is not None and process.stdin is not None
        try:
            process.stdin.write(json.dumps({"code": source}) + "\n")
            process.stdin.flush()
        except BrokenPipeError:
            self.shutdown()
            raise CodeInterpreterError("The sandbox process is not running.") from None
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            self.shutdown()
            raise CodeInterpreterError(
                f"Code execution timed out after {self.timeout} s."
            ) from None
        if line is None:
            self.shutdown()
            raise CodeInterpreterError(
                "The sandbox process ended (CPU time or memory limit reached?)."
            )
        return _result(json.loads(line))


def _result(reply: dict[str, Any]) -> Any:
    if "final" in reply:
        return FinalOutput(reply["final"])
    if "output" in reply:
        return reply["output"]
    error = reply["error"]
    if error["type"] == "SyntaxError":
        raise SyntaxError(f"Invalid Python syntax. message: {error['message']}")
    raise CodeExecutionError(f"{error['type']}: {error['args'] or error['message']}")
