"""The printout of LM history entries, laid out as DSPy 3.4.1 lays it out.

Byte for byte DSPy's: a blue timestamp, red role headers, a green response, ANSI
colours on stdout and none when writing to a file. Programs (and their tests) that
capture ``inspect_history`` output therefore see the same text on either package.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

_RED, _GREEN, _BLUE, _RESET = "\x1b[31m", "\x1b[32m", "\x1b[34m", "\x1b[0m"


class _Printer:
    def __init__(self, file: TextIO | None) -> None:
        self.out = file or sys.stdout
        self.colour = file is None

    def line(self, text: str = "") -> None:
        print(text, file=self.out)

    def coloured(self, colour: str, text: str, end: str = "\n") -> None:
        # DSPy's colour helpers append ``end`` and print() adds a newline of its own.
        body = colour + text + _RESET if self.colour else text
        print(body + end, file=self.out)

    def tool_calls(self, calls: Sequence[dict[str, Any]] | None) -> None:
        if calls:
            self.coloured(_RED, "Tool calls:")
        for call in calls or []:
            function = call.get("function") or {}
            arguments = function.get("arguments")
            if arguments is None:
                arguments = call.get("args", call.get("arguments", {}))
            if isinstance(arguments, str):
                with contextlib.suppress(json.JSONDecodeError):
                    arguments = json.loads(arguments)
            shown = (
                json.dumps(arguments, ensure_ascii=False)
                if isinstance(arguments, (dict, list))
                else str(arguments)
            )
            name = function.get("name") or call.get("name", "<unknown>")
            self.coloured(_GREEN, f"{name}: {shown}".lstrip())

    def part(self, part: dict[str, Any]) -> None:
        kind = part.get("type")
        if kind == "text":
            self.line(part["text"].strip())
        elif kind == "image_url":
            url = part["image_url"].get("url", "")
            if "base64" in url:
                head, data = url.split("base64,")[:2]
                shown = f"<{head}base64,<IMAGE BASE 64 ENCODED({len(data)})>"
            else:
                shown = f"<image_url: {url}>"
            self.coloured(_BLUE, shown.strip())
        elif kind == "input_audio":
            audio = part["input_audio"]
            shown = (
                f"<audio format='{audio['format']}' base64-encoded, length={len(audio['data'])}>"
            )
            self.coloured(_BLUE, shown)
        elif kind in ("file", "input_file"):
            info = part.get("file", part.get("input_file", {}))
            shown = (
                f"<file: name:{info.get('filename', '')}, id:{info.get('file_id', '')}, "
                f"data_length:{len(info.get('file_data', ''))}>"
            )
            self.coloured(_BLUE, shown.strip())

    def entry(self, entry: dict[str, Any]) -> None:
        messages = entry["messages"] or [{"role": "user", "content": entry["prompt"]}]
        outputs = entry["outputs"]
        self.line("\n\n\n")
        self.coloured(_BLUE, f"[{entry.get('timestamp', 'Unknown time')}]")
        for message in messages:
            self.coloured(_RED, f"{message['role'].capitalize()} message:")
            content = message["content"]
            if isinstance(content, str):
                self.line(content.strip())
            elif isinstance(content, list):
                for part in content:
                    self.part(part)
            self.tool_calls(message.get("tool_calls"))
            self.line("\n")
        first = outputs[0]
        if isinstance(first, dict):
            if first.get("text"):
                self.coloured(_RED, "Response:")
                self.coloured(_GREEN, first["text"].strip())
            self.tool_calls(first.get("tool_calls"))
        else:
            self.coloured(_RED, "Response:")
            self.coloured(_GREEN, first.strip())
        if len(outputs) > 1:
            self.coloured(_RED, f" \t (and {len(outputs) - 1} other completions)", end="")


def pretty_print_history(
    history: Sequence[dict[str, Any]], n: int = 1, file: TextIO | None = None
) -> None:
    """Print the last ``n`` entries of ``history`` as DSPy does (``n=0`` prints all of
    them, as DSPy's ``history[-0:]`` does); ``file`` drops the colours."""
    printer = _Printer(file)
    for entry in history[-n:]:
        printer.entry(entry)
    printer.line("\n\n\n")
