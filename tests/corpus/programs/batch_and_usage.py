import json

import dspy

lm = dspy.utils.DummyLM({f"q{i}": {"answer": f"a{i}"} for i in range(4)})
dspy.configure(lm=lm)
qa = dspy.Predict("question -> answer")
examples = [dspy.Example(question=f"q{i}").with_inputs("question") for i in range(4)]
results = qa.batch(examples, num_threads=2, disable_progress_bar=True)
with dspy.track_usage() as usage:
    qa(question="q1")
    qa(question="q2")
print(
    json.dumps(
        {
            "answers": [r.answer for r in results],
            "usage": usage.get_total_tokens(),
            "calls": {lm_name: len(entries) for lm_name, entries in usage.usage_data.items()},
        }
    )
)
