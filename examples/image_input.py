"""Image input through the queue: a DSPy-style signature with a ``dspyq.Image`` field.

``python examples/image_input.py`` starts the dev stack (as the quickstart does), sends
one picture by URL and one as an inline data URI to an ``openai`` worker pool, and prints
the answers, the content parts the worker sent (text, image, text) and the event trace,
where the data URI shows up summarised, not as its base64.
"""

from __future__ import annotations

import base64
import os

import httpx
from rich.console import Console

import dspyq
from dspyq.settings import get_settings
from dspyq.workers.dev import DevStack

console = Console()
LM = "openai/gpt-4o-mini"
# A tiny PNG-like payload, inline as a data URI (real programs: Image.from_path / from_url).
PIXELS = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(600)).decode()


class DescribeImage(dspyq.Signature):
    """Name the animal in the picture."""

    image: dspyq.Image = dspyq.InputField()
    animal: str = dspyq.OutputField()


def script_fake_lm(fake_lm_url: str) -> None:
    """The fake LM answers by the text around the image, which it sees as content parts."""
    rules = [
        {"match": "image_url", "fields": {"animal": "never: parts are not text"}},
        {"match": "[[ ## image ## ]]", "fields": {"animal": "a cat"}},
    ]
    httpx.post(f"{fake_lm_url}/_fake/script", json={"rules": rules}).raise_for_status()


def main() -> None:
    os.environ.setdefault("DSPYQ_PROVIDERS__OPENAI__API_KEY", "sk-demo")
    settings = get_settings()
    with DevStack(settings, pools=["openai"], flower_port=0, fake_lm_port=0) as stack:
        stack.wait_ready(timeout=120)
        assert stack.fake_lm_url is not None
        script_fake_lm(stack.fake_lm_url)
        client = dspyq.Client(settings)
        program = dspyq.Predict(DescribeImage)

        console.rule("What the LM receives")
        messages = dspyq.ChatAdapter().format(
            DescribeImage, [], {"image": dspyq.Image("https://example.com/cat.png")}
        )
        console.print([part["type"] for part in messages[-1]["content"]])

        for image in (dspyq.Image("https://example.com/cat.png"), dspyq.Image(PIXELS)):
            console.rule(f"Through the queue: {image!r}")
            job = client.submit(program, lm=LM, image=image)
            console.print(f"animal: {job.result(timeout=60).animal}")
            sent = httpx.get(f"{stack.fake_lm_url}/_fake/requests").json()[-1]
            parts = sent["body"]["messages"][-1]["content"]
            console.print(f"the provider received: {[p['type'] for p in parts]}")
            same = parts[1]["image_url"]["url"] == image.url
            console.print(f"image sent intact: {same}")
            for event in client.events(job.correlation_id):
                console.print(f"event {event.event_type}: {str(event.data)[:300]}")
        client.close()


if __name__ == "__main__":
    main()
