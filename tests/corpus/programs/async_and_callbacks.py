import asyncio
import json

import dspy
from dspy.utils import BaseCallback

events = []


class Trace(BaseCallback):
    def on_module_start(self, call_id, instance, inputs):
        events.append(["module", type(instance).__name__, inputs["kwargs"]])

    def on_lm_end(self, call_id, outputs, exception):
        events.append(["lm", outputs])


lm = dspy.utils.DummyLM({"one": {"answer": "1"}, "two": {"answer": "2"}})
dspy.configure(lm=lm, callbacks=[Trace()])
qa = dspy.Predict("question -> answer")


async def main():
    first = await qa.acall(question="one")
    second = await dspy.asyncify(qa)(question="two")
    return [first.answer, second.answer]


answers = asyncio.run(main())
dspy.configure(callbacks=[])
print(json.dumps({"answers": answers, "events": events}))
