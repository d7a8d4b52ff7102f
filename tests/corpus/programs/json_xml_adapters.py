import json

import dspy
from dspy.utils import DummyLM

results = {}
for name, adapter in [("json", dspy.JSONAdapter()), ("xml", dspy.XMLAdapter())]:
    lm = DummyLM([{"answer": "Paris", "confidence": "0.9"}], adapter=adapter)
    dspy.configure(lm=lm, adapter=adapter)
    pred = dspy.Predict("question -> answer, confidence: float")(question="Capital of France?")
    results[name] = {
        "answer": pred.answer,
        "confidence": pred.confidence,
        "messages": lm.history[-1]["messages"],
        "outputs": lm.history[-1]["outputs"],
    }
dspy.configure(adapter=None)
print(json.dumps(results))
