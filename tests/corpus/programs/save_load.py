import json
import os
import tempfile

import dspy

program = dspy.ChainOfThought("question -> answer")
program.predict.demos = [dspy.Example(question="q", reasoning="r", answer="a")]
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "program.json")
    program.save(path)
    with open(path) as handle:
        saved = json.load(handle)
    saved.pop("metadata")
    fresh = dspy.ChainOfThought("question -> answer")
    fresh.load(path)
print(json.dumps({"saved": saved, "loaded": [dict(d) for d in fresh.predict.demos]}))
