"""``Image``, ``Audio`` and ``File``: media inputs, rendered as OpenAI content parts as DSPy 3.4.1 does.

Values hold a URL or a base64 data URI, so they travel through the queue as JSON; events
and logs show a summary of a data URI, never its bytes (see
:func:`dspyq.masking.summarise_data_uris`).
Construction never reads the filesystem or the network: ``from_path`` and ``from_url``
do so explicitly.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
import warnings
from typing import Any
from urllib.parse import urlparse

import httpx
import pydantic

from dspyq.core.custom_types import Type

try:  # Pillow is optional: PIL images and raw image bytes need it
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError
except ImportError:  # pragma: no cover - depends on the environment
    PILImage = None


def _data_uri(mime_type: str, payload: bytes) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(payload).decode('utf-8')}"


def is_url(text: str) -> bool:
    """An http(s) or gs URL with a host."""
    try:
        parsed = urlparse(text)
    except ValueError:
        return False
    return parsed.scheme in ("http", "https", "gs") and bool(parsed.netloc)


def _is_http_url(text: str) -> bool:
    try:
        parsed = urlparse(text)
    except ValueError:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def _download(url: str, verify: bool, timeout: float | None) -> tuple[bytes, str]:
    response = httpx.get(url, verify=verify, timeout=timeout, follow_redirects=True)
    response.raise_for_status()
    return response.content, response.headers.get("Content-Type", "")


def _encode_pil(image: Any) -> str:
    buffer = io.BytesIO()
    image_format = image.format or "PNG"
    image.save(buffer, format=image_format)
    mime_type, _ = mimetypes.guess_type(f"file.{image_format.lower()}")
    if mime_type is None:
        raise ValueError(f"Could not determine MIME type for image format: {image_format}")
    return _data_uri(mime_type, buffer.getvalue())


def encode_image(image: Any) -> str:
    """A data URI or remote URL for an image given as URL, data URI, bytes, PIL image or Image."""
    if isinstance(image, dict) and "url" in image:
        return encode_image(image["url"])
    if isinstance(image, str):
        if image.startswith("data:") or is_url(image):
            return image
        raise ValueError(
            f"Unrecognized image string: {image}. Local files must be loaded with Image.from_path()."
        )
    if PILImage is not None and isinstance(image, PILImage.Image):
        return _encode_pil(image)
    if isinstance(image, bytes):
        if PILImage is None:
            raise ImportError("Pillow is required to process image bytes.")
        try:
            return _encode_pil(PILImage.open(io.BytesIO(image)))
        except UnidentifiedImageError as exc:
            raise ValueError(f"Bytes could not be identified as an image: {exc}") from exc
    if isinstance(image, Image):
        return image.url
    raise ValueError(f"Unsupported image type: {type(image)}")


class Image(Type):
    """An image input: ``Image(url_or_data_uri_or_bytes_or_pil)``, ``Image.from_path``, ``Image.from_url``."""

    url: str

    model_config = pydantic.ConfigDict(
        frozen=True, str_strip_whitespace=True, validate_assignment=True, extra="forbid"
    )

    def __init__(self, source: Any = None, /, **data: Any) -> None:
        if source is not None and "url" in data:
            raise TypeError("Image received both `source` and `url`; provide only one image source")
        if source is not None:
            legacy = isinstance(source, dict) and set(source) == {"url"}
            data["url"] = source["url"] if legacy else source
        if "url" in data:
            data["url"] = encode_image(data["url"])
        super().__init__(**data)

    def format(self) -> list[dict[str, Any]]:
        try:
            url = encode_image(self.url)
        except Exception as exc:
            raise ValueError(f"Failed to format image for DSPy: {exc}") from exc
        return [{"type": "image_url", "image_url": {"url": url}}]

    @classmethod
    def from_url(cls, url: str, verify: bool = True, timeout: float | None = 30.0) -> Image:
        """Download an HTTP(S) image into a data URI (the caller vets untrusted hosts)."""
        if not _is_http_url(url):
            raise ValueError(f"Image.from_url requires an HTTP(S) URL, received: {url}")
        payload, mime_type = _download(url, verify, timeout)
        if not mime_type:
            mime_type = mimetypes.guess_type(url)[0] or ""
            if not mime_type:
                raise ValueError(f"Could not determine MIME type for URL: {url}")
        return cls(_data_uri(mime_type, payload))

    @classmethod
    def from_path(cls, file_path: str) -> Image:
        """Read a local image file into a data URI."""
        if not os.path.isfile(file_path):
            raise ValueError(f"File not found: {file_path}")
        mime_type, _ = mimetypes.guess_type(file_path)
        if mime_type is None:
            raise ValueError(f"Could not determine MIME type for file: {file_path}")
        with open(file_path, "rb") as handle:
            return cls(_data_uri(mime_type, handle.read()))

    @classmethod
    def from_file(cls, file_path: str) -> Image:
        """Deprecated alias of :meth:`from_path`, as in DSPy."""
        warnings.warn(
            "Image.from_file is deprecated and will be removed in 3.4; use Image.from_path instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return cls.from_path(file_path)

    @classmethod
    def from_PIL(cls, pil_image: Any) -> Image:
        """Deprecated: ``Image(pil_image)`` does the same."""
        warnings.warn(
            "Image.from_PIL is deprecated and will be removed in 3.4; use Image(pil_image) instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return cls(pil_image)

    def __str__(self) -> str:
        return str(self.serialize_model())

    def __repr__(self) -> str:
        if "base64" in self.url:
            size = len(self.url.split("base64,")[1])
            kind = self.url.split(";")[0].split("/")[-1]
            return f"Image(url=data:image/{kind};base64,<IMAGE_BASE_64_ENCODED({size!s})>)"
        return f"Image(url='{self.url}')"


def encode_audio(audio: Any, audio_format: str = "wav") -> dict[str, Any]:
    """``{"data", "audio_format"}`` for a data URI, bytes, a dict or an Audio."""
    if isinstance(audio, dict) and "data" in audio and "audio_format" in audio:
        return audio
    if isinstance(audio, Audio):
        return {"data": audio.data, "audio_format": audio.audio_format}
    if isinstance(audio, str) and audio.startswith("data:audio/"):
        header, comma, payload = audio.partition(",")
        _, slash, subtype = header.removeprefix("data:").split(";", 1)[0].partition("/")
        if not comma or not slash or not subtype:
            raise ValueError("Malformed audio data URI")
        return {"data": payload, "audio_format": subtype.removeprefix("x-")}
    if isinstance(audio, str):
        raise ValueError(
            "String audio inputs must be data URIs. "
            "Load local files with Audio.from_path() and remote resources with Audio.from_url()."
        )
    if isinstance(audio, bytes):
        return {"data": base64.b64encode(audio).decode("utf-8"), "audio_format": audio_format}
    raise ValueError(f"Unsupported type for encode_audio: {type(audio)}")


class Audio(Type):
    """An audio input: base64 ``data`` and its ``audio_format`` (``wav``, ``mpeg`` ...)."""

    data: str
    audio_format: str

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    def __init__(self, *args: Any, **data: Any) -> None:
        if len(args) > 1:
            raise TypeError(f"Audio expected at most 1 positional argument, received {len(args)}")
        if args:
            if "data" in data:
                raise TypeError("Audio received data as both a positional and keyword argument")
            audio_format = data.pop("audio_format", None)
            value = args[0]
            carries_format = isinstance(value, Audio) or (
                isinstance(value, dict) and "audio_format" in value
            )
            carries_format = carries_format or (
                isinstance(value, str) and value.startswith("data:audio/")
            )
            if audio_format is not None and carries_format:
                raise TypeError(
                    "Audio received audio_format alongside an input that already carries its "
                    "format; provide only one"
                )
            data = {**encode_audio(value, audio_format or "wav"), **data}
        super().__init__(**data)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _validate_input(cls, values: Any) -> Any:
        return encode_audio(values)

    def format(self) -> list[dict[str, Any]]:
        return [
            {"type": "input_audio", "input_audio": {"data": self.data, "format": self.audio_format}}
        ]

    @classmethod
    def from_url(cls, url: str, verify: bool = True, timeout: float | None = 30.0) -> Audio:
        """Download an HTTP(S) audio file (the caller vets untrusted hosts)."""
        if not _is_http_url(url):
            raise ValueError(f"Audio.from_url requires an HTTP(S) URL, received: {url}")
        payload, mime_type = _download(url, verify, timeout)
        mime_type = mime_type or "audio/wav"
        if not mime_type.startswith("audio/"):
            raise ValueError(f"Unsupported MIME type for audio: {mime_type}")
        subtype = mime_type.split("/")[1].removeprefix("x-")
        return cls(data=base64.b64encode(payload).decode("utf-8"), audio_format=subtype)

    @classmethod
    def from_path(cls, file_path: str) -> Audio:
        """Read a local audio file."""
        if not os.path.isfile(file_path):
            raise ValueError(f"File not found: {file_path}")
        mime_type, _ = mimetypes.guess_type(file_path)
        if not mime_type or not mime_type.startswith("audio/"):
            raise ValueError(f"Unsupported MIME type for audio: {mime_type}")
        with open(file_path, "rb") as handle:
            payload = handle.read()
        subtype = mime_type.split("/")[1].removeprefix("x-")
        return cls(data=base64.b64encode(payload).decode("utf-8"), audio_format=subtype)

    def __str__(self) -> str:
        return str(self.serialize_model())

    def __repr__(self) -> str:
        return f"Audio(data=<AUDIO_BASE_64_ENCODED({len(self.data)})>, audio_format='{self.audio_format}')"
