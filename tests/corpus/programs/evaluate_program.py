import json

import dspy
from dspy.evaluate import Evaluate, answer_exact_match

devset = [
    dspy.Example(question=f"q{i}", answer=f"a{i % 2}").with_inputs("question") for i in range(6)
]
lm = dspy.utils.DummyLM({f"q{i}": {"answer": "a0"} for i in range(6)})
dspy.configure(lm=lm)
evaluate = Evaluate(devset=devset, metric=answer_exact_match, num_threads=1, display_progress=False)
result = evaluate(dspy.Predict("question -> answer"))
print(
    json.dumps(
        {
            "score": result.score,
            "rows": [
                [dict(example), dict(pred), bool(score)] for example, pred, score in result.results
            ],
        }
    )
)
