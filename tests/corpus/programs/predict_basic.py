import json

import dspy
from dspy.utils import DummyLM

lm = DummyLM([{"answer": "Paris"}])
dspy.configure(lm=lm)
qa = dspy.Predict("question -> answer")
pred = qa(question="What is the capital of France?")
print(json.dumps({"answer": pred.answer, "messages": lm.history[-1]["messages"]}))
