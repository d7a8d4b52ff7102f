import json

import dspy
from dspy.utils import DummyLM
from dspy.utils.exceptions import AdapterParseError

lm = DummyLM([{"reply": "Paris"}] * 4)
dspy.configure(lm=lm)
qa = dspy.Predict("question -> answer")
try:
    qa(question="Capital of France?")
    caught = None
except AdapterParseError as exc:
    caught = {
        "type": type(exc).__name__,
        "adapter": exc.adapter_name,
        "lm_response": exc.lm_response,
        "is_runtime": isinstance(exc, RuntimeError),
    }
print(json.dumps({"caught": caught, "calls": len(lm.history)}))
