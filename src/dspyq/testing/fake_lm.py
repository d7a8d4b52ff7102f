"""A fake OpenAI- and Anthropic-compatible LM server for tests, demos and load runs.

It is a real HTTP server (starlette on uvicorn) speaking ``POST /v1/chat/completions``,
``POST /v1/messages`` and ``POST /v1/responses`` (all also as server-sent events) and
``GET /v1/models``, and OpenAI's fine-tuning API (:mod:`dspyq.testing.fake_finetune`), close enough that the official ``openai`` and ``anthropic`` SDKs
parse everything it says. Answers come from scripted rules (text, fields or tool
calls) or, by default, from reading the DSPy-style prompt (see
:mod:`dspyq.testing.fake_completion`), cut at ``max_tokens`` as a real model would;
invalid parameters get the providers' 400/404 bodies; latency, 5xx errors, 429s with
Retry-After, quota errors, rate-limit windows, malformed and truncated bodies, dropped
connections and slow first bytes can be switched on (see :mod:`dspyq.testing.fake_exchange`). Every completion
request is logged (keys redacted). Tests in the same process use
:class:`FakeLMServer` (a background thread); other processes steer a server started
with :func:`serve` (``dspyq fake-lm``) over its ``/_fake/*`` endpoints::

    GET    /_fake/requests   the request log (JSON list)
    DELETE /_fake/requests   empty the log
    GET    /_fake/config     config, rules and pending failures
    POST   /_fake/config     change config keys; "rules": [...] replaces the rules
    POST   /_fake/script     append "rules" and "failures" (config keys allowed too)
    POST   /_fake/reset      back to the start configuration, no rules, empty log
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dspyq.testing.fake_embeddings import embeddings_response
from dspyq.testing.fake_exchange import Exchange
from dspyq.testing.fake_finetune import finetune_routes
from dspyq.testing.fake_script import (
    AnswerRule,
    Failure,
    FailureKind,
    FakeConfig,
    FakeLMState,
)


def _json_body(raw: bytes) -> Any:
    """The request's JSON, or None when it is empty or not JSON."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def build_app(state: FakeLMState) -> Starlette:
    """The starlette application serving ``state``."""

    async def complete(request: Request, protocol: str) -> Response:
        raw = await request.body()
        body = _json_body(raw)
        logged = body if body is not None else {"_raw": raw.decode("utf-8", "replace")[:10_000]}
        headers = {k.lower(): v for k, v in request.headers.items()}
        entry = state.log_request(request.method, request.url.path, headers, logged, protocol)
        delay = state.latency()
        if delay:
            await asyncio.sleep(delay)
        response, outcome = await Exchange(state, protocol, body, headers).answer(entry["id"])
        state.finish_request(entry, response.status_code, outcome)
        return response

    async def openai_completions(request: Request) -> Response:
        return await complete(request, "openai")

    async def anthropic_messages(request: Request) -> Response:
        return await complete(request, "anthropic")

    async def responses(request: Request) -> Response:
        return await complete(request, "responses")

    async def embeddings(request: Request) -> Response:
        body = _json_body(await request.body())
        headers = {k.lower(): v for k, v in request.headers.items()}
        entry = state.log_request(request.method, request.url.path, headers, body, "openai")
        status, payload = embeddings_response(body)
        state.finish_request(entry, status, "embeddings")
        return JSONResponse(payload, status_code=status)

    async def models(request: Request) -> Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "dspyq-fake"}
            for name in [*state.config.listed_models(), *sorted(state.finetunes.succeeded_models())]
        ]
        return JSONResponse({"object": "list", "data": data})

    async def requests_log(request: Request) -> Response:
        if request.method == "DELETE":
            state.clear_requests()
            return JSONResponse({"cleared": True})
        return JSONResponse(state.requests())

    async def config(request: Request) -> Response:
        if request.method == "POST":
            try:
                data = dict(await request.json())
                rules = data.pop("rules", None)
                if data:
                    state.configure(**data)
                if rules is not None:
                    state.add_rules([AnswerRule.model_validate(r) for r in rules], replace=True)
            except (ValueError, TypeError, ValidationError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse(state.snapshot())

    async def script(request: Request) -> Response:
        try:
            state.apply(dict(await request.json()))
        except (ValueError, TypeError, ValidationError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse(state.snapshot())

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse(state.snapshot())

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", openai_completions, methods=["POST"]),
            Route("/v1/messages", anthropic_messages, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            *finetune_routes(state),
            Route("/_fake/requests", requests_log, methods=["GET", "DELETE"]),
            Route("/_fake/config", config, methods=["GET", "POST"]),
            Route("/_fake/script", script, methods=["POST"]),
            Route("/_fake/reset", reset, methods=["POST"]),
            Route("/_fake/health", health, methods=["GET"]),
        ]
    )


class _BackgroundServer(uvicorn.Server):
    """uvicorn in a worker thread that stops at once when asked (no 0.1 s polling)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.ready = threading.Event()

    async def main_loop(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        await self.on_tick(0)  # sets the default response headers
        self.ready.set()
        await self.stop_event.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        for task in list(self.server_state.tasks):
            task.cancel()

    def request_stop(self) -> None:
        if self.loop is not None and self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        else:
            self.should_exit = True


def _config_from(kwargs: dict[str, Any]) -> FakeConfig:
    return FakeConfig.model_validate({k: v for k, v in kwargs.items() if v is not None})


class FakeLMServer:
    """The fake server in a background thread: ``with FakeLMServer() as server: ...``.

    ``port=0`` picks a free port. Keyword arguments are :class:`FakeConfig` keys
    (latency, latency_jitter, chunk_delay, error_rate, error_status, seed,
    rate_limit_every, retry_after, api_key, max_context_tokens, models, ratelimit_requests,
    ratelimit_tokens, ratelimit_window); ``rules`` and
    ``script`` preload answers and failures.
    """

    def __init__(
        self,
        port: int = 0,
        latency: float = 0.0,
        *,
        host: str = "127.0.0.1",
        rules: list[dict[str, Any]] | None = None,
        script: dict[str, Any] | str | Path | None = None,
        **config: Any,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.state = FakeLMState(_config_from({"latency": latency, **config}))
        if rules:
            self.state.add_rules([AnswerRule.model_validate(r) for r in rules])
        if script is not None:
            self.state.apply(load_script(script))
        self._server: _BackgroundServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeLMServer:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this; without it Nagle's algorithm and delayed
        # ACKs add ~40 ms to every response (headers and body go out as two writes).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, self._requested_port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(self.state),
            host=self.host,
            port=self.port,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
        )
        self._server = _BackgroundServer(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-lm-server", daemon=True
        )
        self._thread.start()
        if not self._server.ready.wait(timeout=10):
            self.stop()
            raise RuntimeError("the fake LM server did not start within 10 seconds")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.request_stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- addresses ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base(self) -> str:
        """What to pass as ``api_base`` for ``openai/...`` and ``local/...`` models."""
        return f"{self.url}/v1"

    @property
    def anthropic_base(self) -> str:
        """What to pass as ``api_base`` for ``anthropic/...`` models."""
        return self.url

    # --- the log ---------------------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every completion request so far: body, redacted headers, had_key, status, outcome."""
        return self.state.requests()

    @property
    def last_request(self) -> dict[str, Any] | None:
        log = self.state.requests()
        return log[-1] if log else None

    def clear_requests(self) -> None:
        self.state.clear_requests()

    # --- steering ----------------------------------------------------------------------------

    def configure(self, **changes: Any) -> FakeConfig:
        """Change config keys (latency, error_rate, rate_limit_every, ...)."""
        return self.state.configure(**changes)

    def add_rule(
        self,
        match: str | None = None,
        *,
        answer: str | None = None,
        answers: list[str] | None = None,
        fields: dict[str, Any] | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer requests whose conversation matches ``match`` (a regex; None: all).

        ``tool_calls`` are ``{"name": ..., "arguments": {...}}`` dicts.
        """
        given = {k: v for k, v in locals().items() if k != "self" and v is not None}
        self.state.add_rules([AnswerRule.model_validate(given)])

    def answer(self, text: str, match: str | None = None, times: int | None = None) -> None:
        """Reply ``text`` verbatim to matching requests."""
        self.add_rule(match, answer=text, times=times)

    def answer_fields(
        self, fields: dict[str, Any], match: str | None = None, times: int | None = None
    ) -> None:
        """Reply with these output field values, formatted as the prompt asks (chat or JSON)."""
        self.add_rule(match, fields=fields, times=times)

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        *,
        kind: FailureKind = "status",
        retry_after: float | None = None,
        delay: float = 0.0,
        message: str | None = None,
        code: str | None = None,
        retry_after_ms: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Make the next ``count`` completion requests fail (see :class:`Failure`)."""
        given = {k: v for k, v in locals().items() if k != "self" and v is not None}
        self.state.add_failures([Failure.model_validate(given)])

    def rate_limit_next(self, count: int = 1, retry_after: float = 1.0) -> None:
        """Answer the next ``count`` requests with 429 and ``Retry-After: retry_after``."""
        self.fail_next(count, 429, retry_after=retry_after)

    def apply(self, script: dict[str, Any] | str | Path) -> None:
        """Apply a JSON script (dict or file): config keys, ``rules`` and ``failures``."""
        self.state.apply(load_script(script))

    def reset(self) -> None:
        """Start configuration, no rules or failures, empty log."""
        self.state.reset()


def load_script(script: dict[str, Any] | str | Path) -> dict[str, Any]:
    """A script given as a dict, or read from a JSON file."""
    if isinstance(script, dict):
        return dict(script)
    data = json.loads(Path(script).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"the script {script} must hold a JSON object")
    return data


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    latency: float = 0.0,
    error_rate: float = 0.0,
    script: dict[str, Any] | str | Path | None = None,
    log_level: str = "info",
    **config: Any,
) -> None:
    """Run the fake server in the foreground until interrupted (``dspyq fake-lm``)."""
    state = FakeLMState(_config_from({"latency": latency, "error_rate": error_rate, **config}))
    if script is not None:
        state.apply(load_script(script))
    uvicorn.run(build_app(state), host=host, port=port, log_level=log_level, lifespan="off")
