import contextlib
import io
import json
import re

import dspy
from dspy.utils import DummyLM

lm = DummyLM([{"answer": "Paris"}])
dspy.configure(lm=lm)
dspy.Predict("question -> answer")(question="Capital of France?")
buffer = io.StringIO()
with contextlib.redirect_stdout(buffer):
    dspy.inspect_history(n=1)
# The timestamp is the only part that changes from run to run.
print(json.dumps({"shown": re.sub(r"\d{4}-\d\d-\d\dT[\d:.+]+", "T", buffer.getvalue())}))
