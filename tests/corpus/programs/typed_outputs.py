import json
from typing import Literal

import dspy
import pydantic
from dspy.utils import DummyLM


class City(pydantic.BaseModel):
    name: str
    population: int


class Facts(dspy.Signature):
    """Extract facts."""

    text: str = dspy.InputField()
    city: City = dspy.OutputField()
    mood: Literal["happy", "sad"] = dspy.OutputField()
    numbers: list[int] = dspy.OutputField()
    score: float = dspy.OutputField()
    ok: bool = dspy.OutputField()


lm = DummyLM(
    [
        {
            "city": '{"name": "Paris", "population": 2100000}',
            "mood": "happy",
            "numbers": "[1, 2, 3]",
            "score": "0.5",
            "ok": "True",
        }
    ]
)
dspy.configure(lm=lm)
pred = dspy.Predict(Facts)(text="Paris is lovely, 1 2 3")
print(
    json.dumps(
        {
            "city": pred.city.model_dump(),
            "city_type": type(pred.city).__name__,
            "mood": pred.mood,
            "numbers": pred.numbers,
            "score": pred.score,
            "ok": pred.ok,
            "messages": lm.history[-1]["messages"],
        }
    )
)
