"""`vaekit serve`: a small web app over LatentExplorer, on the standard library's HTTP server.

Routes (everything else is 404; only these three files are ever read from disk):
    GET  /  /app.js  /style.css         the page (src/vaekit/serve/static/)
    GET  /api/info                      latent size, dimension order by KL, the latent map
    POST /api/decode     {"z": [...]}   the decoded image
    GET  /api/encode?index=I            latent mean and picture of test image I
    GET  /api/sample?n=N                N prior samples (z and images)
    GET  /api/interpolate?a=I&b=J&steps=T[&spherical=1]   a row of T decoded images
Answers are JSON; errors are JSON {"error": message} with a 4xx status.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from vaekit.serve.explorer import LatentExplorer, RequestError

MAX_BODY_BYTES = 64 * 1024  # a latent vector is a few kB of JSON
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
# Scripts and styles from this server only; images from it or inline data URIs.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def load_static() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("vaekit.serve") / "static"
    return {route: ((folder / name).read_bytes(), kind) for route, (name, kind) in STATIC_FILES.items()}


def _one(query: dict[str, list[str]], name: str, default: str | None = None) -> str:
    values = query.get(name)
    if not values:
        if default is None:
            raise RequestError(f"missing query parameter {name}")
        return default
    return values[0]


def _optional(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


class ExplorerHandler(BaseHTTPRequestHandler):
    explorer: LatentExplorer  # set on the subclass make_server builds
    static: dict[str, tuple[bytes, str]]
    server_version = "vaekit"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: one line per slider move would drown the terminal

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _answer(self, produce: Callable[[], dict[str, Any]]) -> None:
        try:
            self._json(HTTPStatus.OK, produce())
        except RequestError as exc:
            self._error(exc.status, str(exc))

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        routes: dict[str, Callable[[], dict[str, Any]]] = {
            "/api/info": self.explorer.info,
            "/api/encode": lambda: self.explorer.encode(_one(query, "index")),
            "/api/sample": lambda: self.explorer.sample(_one(query, "n", "1"), _optional(query, "label")),
            "/api/interpolate": lambda: self.explorer.interpolate(
                _one(query, "a"),
                _one(query, "b"),
                _one(query, "steps", "10"),
                _one(query, "spherical", "0") == "1",
                _optional(query, "label"),
            ),
        }
        if url.path in routes:
            self._answer(routes[url.path])
        elif url.path in self.static:
            body, kind = self.static[url.path]
            self._send(HTTPStatus.OK, body, kind)
        elif url.path == "/api/decode":
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, 'use POST with a JSON body {"z": [...]}')
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such page: {url.path}")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path != "/api/decode":
            known = path in self.static or path.startswith("/api/")
            status = HTTPStatus.METHOD_NOT_ALLOWED if known else HTTPStatus.NOT_FOUND
            self._error(status, f"no POST route {path}: only /api/decode takes POST")
            return
        length_text = self.headers.get("Content-Length", "")
        if not length_text.isdigit():
            self._error(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length header with the JSON body")
            return
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is {length} bytes: at most {MAX_BODY_BYTES}")
            return
        try:
            payload = json.loads(self.rfile.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._error(HTTPStatus.BAD_REQUEST, 'the body is not valid JSON: send {"z": [numbers]}')
            return
        if not isinstance(payload, dict) or "z" not in payload:
            self._error(HTTPStatus.BAD_REQUEST, 'the body must be a JSON object with a "z" list')
            return
        self._answer(lambda: self.explorer.decode(payload["z"], payload.get("label")))


def make_server(explorer: LatentExplorer, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A server bound to (host, port), not yet serving; port 0 picks a free one."""
    handler = type("Handler", (ExplorerHandler,), {"explorer": explorer, "static": load_static()})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
