"""Runs cases through DSPy and dspyq in two long-lived processes and lists their differences."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SIDE = Path(__file__).with_name("fidelity_side.py")


class Side:
    """One library's process: a JSON case in on stdin, its JSON result out on stdout."""

    def __init__(self, library: str) -> None:
        self.library = library
        self.process: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                [sys.executable, str(SIDE), self.library],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                cwd=SIDE.parent,
            )
        return self.process

    def run(self, case: dict[str, Any]) -> dict[str, Any]:
        process = self._start()
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(case, ensure_ascii=False) + "\n")
        process.stdin.flush()
        line = process.stdout.readline()
        if not line:
            self.process = None
            return {"harness_error": f"{self.library} side exited"}
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=10)
        self.process = None


def same_outcome(dspy: dict[str, Any], ours: dict[str, Any]) -> bool:
    """Equal results; an error matches when dspyq's error is (or subclasses) DSPy's class."""
    if "error" in dspy or "error" in ours:
        return "error" in dspy and "error" in ours and dspy["error"] in ours["bases"]
    return {k: v for k, v in dspy.items() if k != "warnings"} == {
        k: v for k, v in ours.items() if k != "warnings"
    }


def differences(dspy: dict[str, Any], ours: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(class, DSPy's, dspyq's) for each way the two results differ."""
    found: list[tuple[str, Any, Any]] = []
    for key in ("harness_error",):
        if key in dspy or key in ours:
            found.append((key, dspy.get(key), ours.get(key)))
            return found
    phases: list[tuple[str, Any, Any]] = [("build", dspy.get("build"), ours.get("build"))]
    phases.append(("decode", dspy.get("decode"), ours.get("decode")))
    phases.append(("format", dspy.get("format"), ours.get("format")))
    for index, (a, b) in enumerate(zip(dspy.get("parse", []), ours.get("parse", []), strict=False)):
        phases.append((f"parse[{index}]", a, b))
    phases.append(("call", dspy.get("call"), ours.get("call")))
    for name, a, b in phases:
        if a is None and b is None:
            continue
        if a is None or b is None:
            found.append((name, a, b))
            continue
        kind = name.split("[")[0]
        if not same_outcome(a, b):
            what = "error" if "error" in a or "error" in b else "value"
            found.append((f"{kind}.{what}", a, b))
        if a.get("warnings", []) != b.get("warnings", []):
            found.append((f"{kind}.warnings", a.get("warnings"), b.get("warnings")))
    if dspy.get("lm_calls") != ours.get("lm_calls") and not any(
        f[0].startswith("format") for f in found
    ):
        found.append(("call.lm_messages", dspy.get("lm_calls"), ours.get("lm_calls")))
    if dspy.get("extraction_calls") != ours.get("extraction_calls"):
        found.append(
            ("call.extraction_messages", dspy.get("extraction_calls"), ours.get("extraction_calls"))
        )
    return found


def describe(found: list[tuple[str, Any, Any]]) -> str:
    """A readable account of each difference."""
    return "\n\n".join(f"[{kind}]\n{message_diff(a, b)}" for kind, a, b in found)


def message_diff(a: Any, b: Any) -> str:
    """The first differing message, for a readable failure."""
    if not (isinstance(a, dict) and isinstance(b, dict) and "messages" in a and "messages" in b):
        return f"DSPy: {json.dumps(a, ensure_ascii=False)[:1500]}\ndspyq: {json.dumps(b, ensure_ascii=False)[:1500]}"
    for index, (x, y) in enumerate(zip(a["messages"], b["messages"], strict=False)):
        if x != y:
            return f"message {index}:\nDSPy:  {x!r}\ndspyq: {y!r}"
    return f"message count: DSPy {len(a['messages'])}, dspyq {len(b['messages'])}"
