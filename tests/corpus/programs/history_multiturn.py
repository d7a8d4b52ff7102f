import json

import dspy
from dspy.utils import DummyLM


class Chat(dspy.Signature):
    question: str = dspy.InputField()
    history: dspy.History = dspy.InputField()
    answer: str = dspy.OutputField()


lm = DummyLM([{"answer": "Paris"}, {"answer": "About 2 million"}])
dspy.configure(lm=lm)
chat = dspy.Predict(Chat)
history = dspy.History(messages=[])
turns = []
for question in ["Capital of France?", "How many people live there?"]:
    pred = chat(question=question, history=history)
    turns.append(pred.answer)
    history = dspy.History(messages=[*history.messages, {"question": question, **pred}])
print(
    json.dumps(
        {
            "turns": turns,
            "history": history.messages,
            "prompts": [e["messages"] for e in lm.history],
        }
    )
)
