import contextlib
import io
import json

import dspy
from dspy.utils import DummyLM

lm = DummyLM([{"answer": "Paris"}, {"answer": "Rome"}])
dspy.configure(lm=lm)
qa = dspy.Predict("question -> answer")
qa(question="Capital of France?")
qa(question="Capital of Italy?")
entry = lm.history[-1]
buffer = io.StringIO()
with contextlib.redirect_stdout(buffer):
    dspy.inspect_history(n=2)
shown = buffer.getvalue()
print(
    json.dumps(
        {
            "length": len(lm.history),
            "keys": sorted(entry),
            "model": entry["model"],
            "outputs": entry["outputs"],
            "kwargs": entry["kwargs"],
            "messages": entry["messages"],
            "global_length": len(dspy.settings.lm.history),
            "inspect_mentions": [
                word in shown for word in ["Capital of France?", "Capital of Italy?", "Rome"]
            ],
        }
    )
)
