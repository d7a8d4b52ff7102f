import json

import dspy

outer = dspy.utils.DummyLM([{"answer": "outer"}] * 2)
inner = dspy.utils.DummyLM([{"answer": "inner"}])
dspy.configure(lm=outer)
qa = dspy.Predict("question -> answer")
first = qa(question="a").answer
with dspy.context(lm=inner):
    second = qa(question="b").answer
third = qa(question="c").answer
print(json.dumps([first, second, third, len(outer.history), len(inner.history)]))
