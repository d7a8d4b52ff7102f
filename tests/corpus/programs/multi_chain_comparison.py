import json

import dspy
from dspy.utils import DummyLM

completions = [
    dspy.Prediction(reasoning="guess one", answer="Lyon"),
    dspy.Prediction(reasoning="guess two", answer="Paris"),
]
lm = DummyLM([{"rationale": "Paris is the capital", "answer": "Paris"}])
dspy.configure(lm=lm)
compare = dspy.MultiChainComparison("question -> answer", M=2)
pred = compare(completions, question="Capital of France?")
print(json.dumps({"answer": pred.answer, "messages": lm.history[-1]["messages"]}))
