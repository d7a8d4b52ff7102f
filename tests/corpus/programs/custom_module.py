import json

import dspy
from dspy.utils import DummyLM


class RewriteThenAnswer(dspy.Module):
    def __init__(self):
        super().__init__()
        self.rewrite = dspy.Predict("question -> query")
        self.answer = dspy.ChainOfThought("query -> answer")

    def forward(self, question):
        query = self.rewrite(question=question).query
        return self.answer(query=query)


lm = DummyLM([{"query": "capital France"}, {"reasoning": "known", "answer": "Paris"}])
dspy.configure(lm=lm)
program = RewriteThenAnswer()
pred = program(question="Where is the French government?")
print(
    json.dumps(
        {
            "answer": pred.answer,
            "predictors": [name for name, _ in program.named_predictors()],
            "prompts": [entry["messages"] for entry in lm.history],
        }
    )
)
