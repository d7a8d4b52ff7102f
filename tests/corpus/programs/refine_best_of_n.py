import json

import dspy
from dspy.utils import DummyLM


def reward(args, pred):
    return 1.0 if pred.answer == "Paris" else 0.0


lm = DummyLM([{"answer": "Lyon"}, {"answer": "Paris"}, {"answer": "Nice"}, {"answer": "Paris"}])
dspy.configure(lm=lm)
qa = dspy.Predict("question -> answer")
best = dspy.BestOfN(module=qa, N=3, reward_fn=reward, threshold=1.0)
first = best(question="Capital of France?")
refine = dspy.Refine(module=qa, N=3, reward_fn=reward, threshold=1.0)
lm2 = DummyLM([{"answer": "Nice"}, {"answer": "Paris"}, {"answer": "Paris"}])
with dspy.context(lm=lm2):
    second = refine(question="Capital of France?")
print(
    json.dumps(
        {
            "best": first.answer,
            "refined": second.answer,
            "calls": len(lm.history),
            "refine_calls": len(lm2.history),
        }
    )
)
