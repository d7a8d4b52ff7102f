import json
import os
import tempfile

import dspy

dspy.settings.configure(lm=dspy.utils.DummyLM([{"answer": "from the loaded program"}]))
program = dspy.Predict("question -> answer")
program.demos = [dspy.Example(question="q", answer="a")]
with tempfile.TemporaryDirectory() as tmp:
    directory = os.path.join(tmp, "saved")
    program.save(directory, save_program=True)
    try:
        dspy.load(directory)
        refused = None
    except ValueError as exc:
        refused = str(exc)
    loaded = dspy.load(directory, allow_pickle=True)
    files = sorted(os.listdir(directory))
answer = loaded(question="new").answer
print(
    json.dumps(
        {
            "files": files,
            "refused": refused,
            "answer": answer,
            "demos": [dict(d) for d in loaded.demos],
            "lm_is_configured": dspy.settings.lm is not None,
        }
    )
)
