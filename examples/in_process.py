"""Quickstart: a DSPy-style program run in-process against dspyq's fake LM server.

Run it with ``python examples/in_process.py``. It starts the fake OpenAI-compatible
server in the background, so nothing else needs to be running.
"""

from __future__ import annotations

import dspyq
from dspyq.testing import FakeLMServer


class AnswerQuestion(dspyq.Signature):
    """Answer the question with a short fact."""

    question: str = dspyq.InputField()
    answer: str = dspyq.OutputField(desc="a few words")


def main() -> None:
    with FakeLMServer() as server:
        # Scripted answers: the server replies in whatever format the prompt asks for.
        server.answer_fields(
            {"reasoning": "France's capital city is Paris.", "answer": "Paris"},
            match="capital of France",
        )
        lm = dspyq.LM("openai/gpt-4o-mini", api_base=server.openai_base, api_key="sk-demo")
        dspyq.configure(lm=lm)

        qa = dspyq.ChainOfThought(AnswerQuestion)
        prediction = qa(question="What is the capital of France?")

        print("Prediction:", prediction)
        print("Answer:", prediction.answer)
        print("\nThe prompt dspyq sent (byte-identical to DSPy 3.4.1's):")
        dspyq.inspect_history(n=1)


if __name__ == "__main__":
    main()
