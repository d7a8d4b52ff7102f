"""The sandboxed child of PythonInterpreter: runs code sent as JSON lines, one session of globals.

Started as ``python -I sandbox_child.py CPU_SECONDS MEMORY_BYTES`` (isolated mode: no
environment variables, no user site, no current directory on the path). It lowers
its own CPU and address-space limits, then installs an audit hook that refuses
network, process creation and writes outside the temporary directory. This file
imports nothing from the package, so the sandbox carries none of its state.
"""

import ast
import io
import json
import resource
import sys

PROTOCOL = "\x00dspyq-sandbox\x00"
_BLOCKED_PREFIXES = ("socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "pty.")
_BLOCKED = {"os.system", "os.fork", "os.forkpty", "os.kill", "os.killpg", "ctypes.dlopen"}


class _FinalOutput(BaseException):
    """Raised by SUBMIT() to end the code with a final answer."""


def _audit(event, args):
    if event in _BLOCKED or event.startswith(_BLOCKED_PREFIXES):
        raise PermissionError(f"{event} is not allowed in the sandbox")
    if (
        event == "open"
        and len(args) > 1
        and isinstance(args[1], str)
        and set(args[1]) & set("wax+")
    ):
        path = str(args[0])
        if not path.startswith("/tmp/"):
            raise PermissionError(f"writing {path} is not allowed in the sandbox")


def _submit(output):
    raise _FinalOutput({"output": output})


def _jsonable(value):
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return str(value)


def _run(code, session):
    """(kind, payload): ("output", value) | ("final", value) | ("error", {...})."""
    buffer = io.StringIO()
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = buffer
    try:
        tree = ast.parse(code)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, "<code>", "exec"), session)
        result = None
        if last is not None:
            result = eval(compile(ast.Expression(last.value), "<code>", "eval"), session)
    except _FinalOutput as final:
        return "final", _jsonable(final.args[0])
    except SyntaxError as exc:
        return "error", {"type": "SyntaxError", "message": str(exc), "args": []}
    except BaseException as exc:  # the code's own error, reported to the caller
        return "error", {
            "type": type(exc).__name__,
            "message": str(exc),
            "args": _jsonable(list(exc.args)),
        }
    finally:
        sys.stdout, sys.stderr = stdout, stderr
    return "output", buffer.getvalue() if result is None else _jsonable(result)


def main():
    cpu_seconds, memory_bytes = int(sys.argv[1]), int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    if memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    channel = sys.stdout
    session = {"__name__": "__main__", "SUBMIT": _submit}
    sys.addaudithook(_audit)
    for line in sys.stdin:
        request = json.loads(line)
        kind, payload = _run(request["code"], session)
        channel.write(PROTOCOL + json.dumps({kind: payload}) + "\n")
        channel.flush()


if __name__ == "__main__":
    main()
