"""StdlibTransport: httpx requests over http.client, with httpx's responses and errors.

Against a small HTTP/1.1 server of the test's own, whose answers each test chooses:
connections are reused, a connection the server closed is not, compressed and chunked
bodies read as httpx reads them, TLS is verified with the context given, and failures
are httpx's exceptions.
"""

from __future__ import annotations

import gzip
import http.server
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from dspyq.lm.providers.direct import DirectClient
from dspyq.lm.providers.stdlib_transport import StdlibTransport

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


class _Server:
    """A threaded HTTP/1.1 server; ``answer`` writes each response."""

    def __init__(self, answer: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.peers: list[tuple[str, int]] = []
        server = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                server.peers.append(self.client_address)
                self.body = self.rfile.read(int(self.headers.get("content-length", 0)))
                server.answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _json_answer(handler: http.server.BaseHTTPRequestHandler) -> None:
    body = b'{"echo": "%s"}' % handler.body  # type: ignore[attr-defined]
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def serve() -> Iterator[Callable[..., _Server]]:
    servers: list[_Server] = []

    def start(answer: Handler = _json_answer, tls: ssl.SSLContext | None = None) -> _Server:
        servers.append(_Server(answer, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _post(
    transport: StdlibTransport, url: str, body: bytes = b"hi", timeout: float = 5.0
) -> httpx.Response:
    """A POST through ``transport`` alone (a client would close it when closed)."""
    extensions = {"timeout": httpx.Timeout(timeout).as_dict()}
    request = httpx.Request("POST", url, content=body, extensions=extensions)
    response = transport.handle_request(request)
    response.read()
    return response


def test_answers_read_as_httpx_reads_them_and_connections_are_reused(
    serve: Callable[..., _Server],
) -> None:
    server = serve()
    transport = StdlibTransport()
    client = httpx.Client(transport=transport)
    first = client.post(f"http://127.0.0.1:{server.port}/v1/x?a=1", content=b"one")
    second = client.post(f"http://127.0.0.1:{server.port}/v1/x?a=1", content=b"two")
    assert (first.status_code, first.json()) == (200, {"echo": "one"})
    assert second.json() == {"echo": "two"}
    assert first.headers["content-type"] == "application/json"
    assert first.http_version == "HTTP/1.1" and first.reason_phrase == "OK"
    assert server.peers[0] == server.peers[1]  # the same client socket: kept alive
    client.close()


def test_a_connection_the_server_closed_is_not_used_again(
    serve: Callable[..., _Server],
) -> None:
    closed = threading.Event()

    def answer_then_close(handler: http.server.BaseHTTPRequestHandler) -> None:
        _json_answer(handler)
        handler.wfile.flush()
        # Closed after the answer, without saying so: the client finds out when idle.
        handler.connection.shutdown(socket.SHUT_RDWR)
        handler.close_connection = True
        closed.set()

    server = serve(answer_then_close)
    transport = StdlibTransport()
    url = f"http://127.0.0.1:{server.port}/"
    assert _post(transport, url, b"a").json() == {"echo": "a"}
    assert closed.wait(5.0)
    time.sleep(0.05)  # for the closing to reach the client's socket
    assert _post(transport, url, b"b").json() == {"echo": "b"}
    assert server.peers[0] != server.peers[1]


def test_a_connection_close_answer_is_not_kept(serve: Callable[..., _Server]) -> None:
    def close_header(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(b"until the end")  # no length: the body runs to the close

    server = serve(close_header)
    transport = StdlibTransport()
    url = f"http://127.0.0.1:{server.port}/"
    assert _post(transport, url).text == "until the end"
    assert _post(transport, url).text == "until the end"
    assert server.peers[0] != server.peers[1]


def test_idle_connections_expire_and_are_bounded(serve: Callable[..., _Server]) -> None:
    server = serve()
    url = f"http://127.0.0.1:{server.port}/"
    expiring = StdlibTransport(limits=httpx.Limits(keepalive_expiry=0.0))
    _post(expiring, url)
    _post(expiring, url)
    assert server.peers[0] != server.peers[1]
    none_kept = StdlibTransport(limits=httpx.Limits(max_keepalive_connections=0))
    _post(none_kept, url)
    _post(none_kept, url)
    assert len(set(server.peers[2:])) == 2


def test_compressed_and_chunked_bodies_are_decoded(serve: Callable[..., _Server]) -> None:
    def gzip_chunked(handler: http.server.BaseHTTPRequestHandler) -> None:
        packed = gzip.compress(b'{"ok": true}')
        handler.send_response(200)
        handler.send_header("Content-Encoding", "gzip")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for part in (packed[:7], packed[7:]):
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        handler.wfile.write(b"0\r\n\r\n")

    server = serve(gzip_chunked)
    transport = StdlibTransport()
    url = f"http://127.0.0.1:{server.port}/"
    assert _post(transport, url).json() == {"ok": True}
    assert _post(transport, url).json() == {"ok": True}
    assert server.peers[0] == server.peers[1]  # chunked answers keep the connection


def test_failures_are_httpx_errors(serve: Callable[..., _Server]) -> None:
    def hang_up(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.close_connection = True  # no answer at all

    def garbage(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.wfile.write(b"NOT HTTP\r\n\r\n")
        handler.close_connection = True

    stopped = threading.Event()

    def slow(handler: http.server.BaseHTTPRequestHandler) -> None:
        stopped.wait(2.0)

    transport = StdlibTransport()
    with pytest.raises(httpx.RemoteProtocolError, match="disconnected"):
        _post(transport, f"http://127.0.0.1:{serve(hang_up).port}/")
    with pytest.raises(httpx.RemoteProtocolError):
        _post(transport, f"http://127.0.0.1:{serve(garbage).port}/")
    with pytest.raises(httpx.ReadTimeout):
        _post(transport, f"http://127.0.0.1:{serve(slow).port}/", timeout=0.2)
    stopped.set()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        _post(transport, f"http://127.0.0.1:{closed}/")
    with pytest.raises(httpx.UnsupportedProtocol):
        _post(transport, "ftp://127.0.0.1/")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_is_verified_with_the_context_given(
    serve: Callable[..., _Server], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    server = serve(tls=server_side)
    url = f"https://127.0.0.1:{server.port}/v1/x"
    trusting = ssl.create_default_context(cafile=str(cert))
    assert _post(StdlibTransport(verify=trusting), url, b"tls").json() == {"echo": "tls"}
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        _post(StdlibTransport(), url)  # the default CA bundle does not know this one
    with DirectClient(verify=trusting) as direct:
        got = direct.post_json(url, b"direct", {"content-type": "application/json"}, timeout=5)
    assert got.json() == {"echo": "direct"}


def test_a_closed_transport_keeps_no_connection(serve: Callable[..., _Server]) -> None:
    server = serve()
    transport = StdlibTransport()
    url = f"http://127.0.0.1:{server.port}/"
    _post(transport, url)
    transport.close()
    _post(transport, url)  # still answers, but opens a new connection and keeps none
    assert server.peers[0] != server.peers[1]
    _post(transport, url)
    assert len(set(server.peers)) == 3
