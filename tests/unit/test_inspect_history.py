"""``inspect_history`` prints what DSPy 3.4.1 prints for the same history entries."""

from __future__ import annotations

import copy
import io
import re
from typing import Any

import dspy
import dspy.utils
import pytest
from dspy.utils.inspect_history import pretty_print_history as dspy_print

import dspyq
import dspyq.utils
from dspyq.lm import LM, clear_history, global_history
from dspyq.lm.pretty import pretty_print_history
from dspyq.testing import FakeLMServer

IMAGE = "data:image/png;base64," + "A" * 40
ENTRIES: list[dict[str, Any]] = [
    {"prompt": "just a prompt  ", "messages": None, "outputs": ["  plain out  "]},
    {
        "messages": [
            {"role": "system", "content": "  Be brief.\n"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": " look "},
                    {"type": "image_url", "image_url": {"url": IMAGE}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                    {"type": "input_audio", "input_audio": {"format": "wav", "data": "QUJD"}},
                    {"type": "file", "file": {"filename": "a.pdf", "file_data": "xyz"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"function": {"name": "search", "arguments": '{"q": "é"}'}},
                    {"name": "calc", "args": {"x": [1, 2]}},
                    {"function": {"arguments": "not json"}},
                ],
            },
        ],
        "outputs": ["first", "second", "third"],
        "timestamp": "2026-01-02T03:04:05.678",
    },
    {
        "messages": [{"role": "user", "content": "hi"}],
        "outputs": [{"text": " a dict output ", "tool_calls": [{"name": "t", "args": {}}]}],
        "timestamp": "2026-01-02T03:04:06",
    },
    {"messages": [{"role": "user", "content": "q"}], "outputs": [{"text": ""}]},
]


@pytest.mark.parametrize("n", [0, 1, 2, 4, 9])
@pytest.mark.parametrize("to_file", [False, True])
def test_printout_is_dspys_byte_for_byte(
    n: int, to_file: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    printed = []
    for printer in (dspy_print, pretty_print_history):
        file = io.StringIO() if to_file else None
        printer(copy.deepcopy(ENTRIES), n, file=file)
        printed.append(file.getvalue() if file else capsys.readouterr().out)
    assert printed[1] == printed[0]
    assert ("\x1b[31m" in printed[1]) is not to_file


def test_lm_and_global_inspect_history_print_the_lm_entries_as_dspy_would(
    fake_lm: FakeLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    clear_history()
    fake_lm.answer("[[ ## answer ## ]]\n42\n\n[[ ## completed ## ]]")
    lm = LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="k", cache=False)
    lm(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "6*7?"}])
    dspy_print(lm.history, 1)
    expected = capsys.readouterr().out
    assert "6*7?" in expected and "\x1b[32m[[ ## answer ## ]]" in expected
    lm.inspect_history(1)
    assert capsys.readouterr().out == expected
    dspyq.inspect_history(1)
    assert capsys.readouterr().out == expected
    file = io.StringIO()
    dspyq.inspect_history(1, file=file)
    assert "\x1b" not in file.getvalue() and "Response:" in file.getvalue()
    assert global_history()[-1] is lm.history[-1]


def test_dummy_lm_history_prints_as_dspys_dummy_lm(capsys: pytest.CaptureFixture[str]) -> None:
    printed = []
    for package in (dspy, dspyq):
        lm = package.utils.DummyLM([{"answer": "Paris"}])
        package.Predict("question -> answer")(question="Capital?", lm=lm)
        entry = lm.history[-1]
        entry["timestamp"] = "fixed"
        lm.inspect_history(1)
        printed.append(capsys.readouterr().out)
    assert printed[1] == printed[0]
    assert "[34m[fixed]" in printed[0]


def test_entries_carry_dspys_timestamp_form(fake_lm: FakeLMServer) -> None:
    # DSPy stamps entries with local time, naive, to the microsecond; inspect_history shows it.
    theirs = dspy.utils.DummyLM([{"a": "a"}])
    dspy.Predict("q -> a")(q="x", lm=theirs)
    ours = dspyq.utils.DummyLM([{"a": "a"}])
    dspyq.Predict("q -> a")(q="x", lm=ours)
    fake_lm.answer("[[ ## a ## ]]\nb\n\n[[ ## completed ## ]]")
    lm = LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="k", cache=False)
    lm("hi")
    form = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?")
    for entry in (theirs.history[-1], ours.history[-1], lm.history[-1]):
        assert form.fullmatch(entry["timestamp"]), entry["timestamp"]
