import json

import dspy
from dspy.teleprompt import BootstrapFewShot


def metric(example, pred, trace=None):
    return example.answer == pred.answer


trainset = [
    dspy.Example(question=f"q{i}", answer=f"a{i}").with_inputs("question") for i in range(6)
]
# Right on even questions only, so some traces are kept and some are not.
answers = {
    f"q{i}": {"reasoning": f"r{i}", "answer": f"a{i}" if i % 2 == 0 else "wrong"} for i in range(6)
}
lm = dspy.utils.DummyLM(answers)
dspy.configure(lm=lm)
optimizer = BootstrapFewShot(metric=metric, max_bootstrapped_demos=2, max_labeled_demos=3)
compiled = optimizer.compile(dspy.ChainOfThought("question -> answer"), trainset=trainset)
demos = [
    {k: v for k, v in dict(demo).items() if k != "augmented"} for demo in compiled.predict.demos
]
print(json.dumps({"demos": demos}))
