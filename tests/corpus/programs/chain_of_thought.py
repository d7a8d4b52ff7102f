import json

import dspy
from dspy.utils import DummyLM


class Math(dspy.Signature):
    """Solve the arithmetic problem."""

    problem: str = dspy.InputField()
    result: int = dspy.OutputField(desc="the number")


lm = DummyLM([{"reasoning": "2 plus 2", "result": "4"}])
dspy.configure(lm=lm)
pred = dspy.ChainOfThought(Math)(problem="2+2")
print(
    json.dumps(
        {"reasoning": pred.reasoning, "result": pred.result, "messages": lm.history[-1]["messages"]}
    )
)
