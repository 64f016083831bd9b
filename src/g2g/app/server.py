"""`g2g app`: a local web page for a model — swap, K class references, a class × content grid and a
class code interpolation.
Standard library only (http.server + a JSON API + one static page in plain JS): no extra dependency,
nothing fetched from or sent to the network, testable offline.

Endpoints: GET / (the page), GET /api/info; POST /api/swap, /api/grid, /api/interpolate, /api/random
take and return JSON (images as base64 data URLs). A user mistake is answered 400 {"error": one line};
the server keeps serving."""
from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..inference import G2GModel
from .api import DATASETS, MAX_REFERENCES, App
from .images import MAX_IMAGE_BYTES

# a request: image 1 and up to MAX_REFERENCES image-2 files of MAX_IMAGE_BYTES each, base64 (4/3), and the JSON around
MAX_BODY_BYTES = (MAX_REFERENCES + 1) * MAX_IMAGE_BYTES * 4 // 3 + 2**20
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/index.html": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8")}
STATIC_DIR = Path(__file__).resolve().parent / "static"
LOOPBACK = ("127.0.0.1", "localhost")


class AppServer(ThreadingHTTPServer):
    daemon_threads = True  # a request left hanging does not keep the process alive

    def __init__(self, address: tuple[str, int], app: App, quiet: bool = False):
        super().__init__(address, Handler)
        self.app, self.quiet, self.host = app, quiet, address[0]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server_port}/"  # the port bound, also when 0 was asked


class Handler(BaseHTTPRequestHandler):
    server: AppServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/api/info":
            self._json(200, self.server.app.info())
        elif path in STATIC:
            name, content_type = STATIC[path]
            self._send(200, (STATIC_DIR / name).read_bytes(), content_type)
        else:
            self._json(404, {"error": f"no page {path}; open /"})

    def _request(self) -> dict:
        """The JSON object in the body; ValueError (one line) for anything else."""
        header = self.headers.get("Content-Length", "0").strip()
        if not header.isdigit():
            self.close_connection = True  # the body, if any, is not read
            raise ValueError("the request has no valid Content-Length; send JSON with one")
        length = int(header)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the body is not read
            raise ValueError(f"request of {length / 2**20:.0f} MB is over the limit of "
                             f"{MAX_BODY_BYTES // 2**20} MB; send fewer or smaller images")
        try:
            request = json.loads(self.rfile.read(length) or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError("the request is not JSON") from None
        if not isinstance(request, dict):
            raise ValueError("the request must be a JSON object")
        return request

    def do_POST(self) -> None:
        app = self.server.app
        routes = {"/api/swap": app.swap, "/api/grid": app.grid, "/api/interpolate": app.interpolate,
                  "/api/random": app.random}
        path = self.path.split("?", 1)[0]
        try:
            request = self._request()  # read first, whatever the path: the connection stays usable
            if path not in routes:
                self._json(404, {"error": f"no endpoint {path}"})
            else:
                self._json(200, routes[path](request))
        except ValueError as e:
            self._json(400, {"error": " ".join(str(e).split())})
        except Exception as e:  # a fault of the model or the server: say so, keep serving
            self.log_error("%s", repr(e))
            self._json(500, {"error": f"internal error: {' '.join(str(e).split()) or type(e).__name__}"})


def make_server(model: G2GModel, name: str = "model", host: str = "127.0.0.1", port: int = 7860,
                data: str = "shapes", quiet: bool = False) -> AppServer:
    """The app's HTTP server bound to host:port (port 0: a free one; `server.url` says which), not yet
    serving: call `serve_forever()` (in a thread for tests) and `shutdown()`, `server_close()` after."""
    return AppServer((host, port), App(model, name, data), quiet=quiet)


def default_data(model: str) -> str:
    """The built-in dataset a bundled model was trained on; shapes for anything else."""
    if not Path(model).exists():
        try:
            from ..models import bundled_info
            data = bundled_info(model).get("data")
        except (ValueError, OSError):
            data = None
        if data in DATASETS:
            return data
    return "shapes"


def serve(model: str, host: str = "127.0.0.1", port: int = 7860, data: str | None = None) -> int:
    """Load `model` (a file, folder or bundled name, as `g2g.load` takes it) and serve the page until
    Ctrl-C."""
    from .. import load
    server = make_server(load(model), Path(model).stem or model, host, port, data or default_data(model))
    print(f"serving {model} at {server.url} (Ctrl-C stops)", flush=True)
    if host not in LOOPBACK:
        print(f"note: bound to {host}: anyone who can reach this address can use the page", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
