import json

import dspy
from dspy.utils import DummyLM


class Describe(dspy.Signature):
    """Describe the image."""

    image: dspy.Image = dspy.InputField()
    caption: str = dspy.OutputField()


lm = DummyLM([{"caption": "a red dot"}])
dspy.configure(lm=lm)
image = dspy.Image("https://example.com/dot.png")
pred = dspy.Predict(Describe)(image=image)
print(
    json.dumps({"caption": pred.caption, "url": image.url, "messages": lm.history[-1]["messages"]})
)
