import json

import dspy
from dspy.teleprompt import LabeledFewShot

trainset = [
    dspy.Example(question=f"q{i}", answer=f"a{i}").with_inputs("question") for i in range(5)
]
student = dspy.Predict("question -> answer")
compiled = LabeledFewShot(k=3).compile(student, trainset=trainset)
lm = dspy.utils.DummyLM([{"answer": "x"}])
dspy.configure(lm=lm)
compiled(question="new")
print(
    json.dumps(
        {
            "demos": [dict(demo) for demo in compiled.demos],
            "messages": lm.history[-1]["messages"],
        }
    )
)
