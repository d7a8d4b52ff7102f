"""Custom values crossing the queue, in events, and at the Anthropic provider."""

from __future__ import annotations

import base64
import json

import pytest

import dspyq
from dspyq.core.custom_types import custom_types_from_json, custom_types_to_json
from dspyq.errors import BadRequestError, InputError
from dspyq.lm.providers.anthropic import _convert_message
from dspyq.masking import mask

PNG = "data:image/png;base64," + base64.b64encode(bytes(300)).decode()


def test_custom_values_round_trip_as_json() -> None:
    inputs = {
        "image": dspyq.Image(PNG),
        "gallery": [dspyq.Image("https://example.com/a.png")],
        "clip": dspyq.Audio(data="QUJD", audio_format="wav"),
        "doc": dspyq.File(file_id="f-1", filename="a.pdf"),
        "code": dspyq.Code(code="x = 1"),
        "plain": {"k": [1, "two"]},
    }
    wire = json.loads(json.dumps(custom_types_to_json(inputs)))
    assert custom_types_from_json(wire) == inputs


def test_a_tag_naming_something_else_is_refused() -> None:
    tag = {"__dspyq_type__": "os:system", "fields": {}}
    with pytest.raises(InputError, match="not a custom type"):
        custom_types_from_json({"x": tag})
    with pytest.raises(InputError, match="cannot be imported"):
        custom_types_from_json({"__dspyq_type__": "no_such_module:X", "fields": {}})


def test_events_and_logs_summarise_data_uris() -> None:
    shown = mask({"input_data": {"image": PNG}, "text": f"see {PNG} here"})
    assert shown["input_data"]["image"] == "data:image/png;base64,<400 chars>"
    assert shown["text"] == "see data:image/png;base64,<400 chars> here"
    assert mask("data:image/png;base64,QUJD") == "data:image/png;base64,QUJD"  # short: kept


def test_anthropic_gets_image_and_document_blocks() -> None:
    sig = dspyq.make_signature("question -> answer")

    class WithMedia(sig):  # type: ignore[misc, valid-type]
        image: dspyq.Image = dspyq.InputField()
        doc: dspyq.File = dspyq.InputField()

    pdf = dspyq.File.from_bytes(b"%PDF", filename="a.pdf", mime_type="application/pdf")
    messages = dspyq.ChatAdapter().format(
        WithMedia, [], {"question": "q", "image": dspyq.Image(PNG), "doc": pdf}
    )
    blocks = _convert_message(messages[-1])["content"]
    kinds = [block["type"] for block in blocks]
    assert kinds == ["text", "image", "text", "document", "text"]
    assert blocks[1]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": PNG.split(",", 1)[1],
    }
    assert blocks[3] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERg=="},
        "title": "a.pdf",
    }
    url_image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    converted = _convert_message({"role": "user", "content": [url_image]})["content"][0]
    assert converted == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/a.png"},
    }
    audio = {"type": "input_audio", "input_audio": {"data": "QUJD", "format": "wav"}}
    with pytest.raises(BadRequestError, match="no audio"):
        _convert_message({"role": "user", "content": [audio]})


@pytest.fixture
def media_server():  # type: ignore[no-untyped-def]
    """A tiny HTTP server with one picture and one sound, each with its Content-Type."""
    import http.server
    import threading

    files = {"/cat.png": (b"\x89PNG" * 40, "image/png"), "/clip.wav": (b"RIFF" * 40, "audio/x-wav")}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, kind = files[self.path]
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def test_from_url_downloads_like_dspy(media_server: str) -> None:
    import dspy

    for make in (
        lambda p: p.Image.from_url(f"{media_server}/cat.png"),
        lambda p: p.Audio.from_url(f"{media_server}/clip.wav"),
    ):
        assert make(dspyq).model_dump() == make(dspy).model_dump()
    with pytest.raises(ValueError, match="requires an HTTP"):
        dspyq.Image.from_url("ftp://example.com/a.png")


def test_string_signatures_name_the_types_like_dspy() -> None:
    import dspy

    ours = dspyq.Signature("image: dspyq.Image, clip: dspyq.Audio -> code: dspyq.Code")
    theirs = dspy.Signature("image: dspy.Image, clip: dspy.Audio -> code: dspy.Code")
    assert [f.annotation.__name__ for f in ours.fields.values()] == [
        f.annotation.__name__ for f in theirs.fields.values()
    ]
