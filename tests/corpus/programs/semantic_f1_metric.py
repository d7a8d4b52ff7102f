import json

import dspy
from dspy.evaluate import Evaluate, SemanticF1

devset = [
    dspy.Example(question=f"q{i}", response=f"gold {i}").with_inputs("question") for i in range(3)
]
# The judge's request names the ground truth; it is matched first.
answers = {"ground_truth": {"reasoning": "overlap", "recall": "0.5", "precision": "1.0"}}
answers.update({f"q{i}": {"response": f"mine {i}"} for i in range(3)})
dspy.configure(lm=dspy.utils.DummyLM(answers))
metric = SemanticF1()
result = Evaluate(devset=devset, metric=metric, num_threads=1, display_progress=False)(
    dspy.Predict("question -> response")
)
print(json.dumps({"score": result.score, "per_example": [float(s) for _, _, s in result.results]}))
