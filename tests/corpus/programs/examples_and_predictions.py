import copy
import json

import dspy
from dspy.utils import DummyLM

example = dspy.Example(question="Capital of France?", answer="Paris", note="x").with_inputs(
    "question"
)
inputs = example.inputs()
labels = example.labels()
lm = DummyLM([{"reasoning": "known", "answer": "Paris"}])
dspy.configure(lm=lm)
program = dspy.ChainOfThought("question -> answer")
pred = program(**inputs)
program.predict.demos = [example]
clone = copy.deepcopy(program)
fresh = program.reset_copy()
print(
    json.dumps(
        {
            "inputs": dict(inputs),
            "input_keys": sorted(example._input_keys),
            "labels": dict(labels),
            "without": dict(example.without("note")),
            "copy": dict(example.copy(answer="Lyon")),
            "len": len(example),
            "keys": sorted(example.keys()),
            "get": example.get("missing", "default"),
            "answer_attr": pred.answer,
            "answer_item": pred["answer"],
            "pred_keys": sorted(pred.keys()),
            "pred_items": sorted(pred.items()),
            "pred_get": pred.get("nothing", "none"),
            "pred_in": "answer" in pred,
            "pred_completions": len(pred.completions),
            "pred_dict": pred.toDict(),
            "predictors": [name for name, _ in program.named_predictors()],
            "clone_demos": len(clone.predict.demos),
            "fresh_demos": len(fresh.predict.demos),
            "clone_is_new": clone.predict is not program.predict,
        }
    )
)
