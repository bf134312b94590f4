"""A registry on loopback that answers the two calls image-reflector-controller makes to scan
an image (OCI distribution spec: `GET /v2/` and `GET /v2/<name>/tags/list`), with tags the test
chooses. It stands in for a real registry the drill must not reach."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def tag_registry(tags: Mapping[str, Sequence[str]]) -> Iterator[str]:
    """`with tag_registry({"app": ["1.0.0", "1.2.0"]}) as host:` -> "127.0.0.1:PORT"."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            path = self.path.split("?", 1)[0]
            if path in ("/v2", "/v2/"):
                self._send(200, {})
            elif path.startswith("/v2/") and path.endswith("/tags/list"):
                name = path[len("/v2/"):-len("/tags/list")]
                if name in tags:
                    self._send(200, {"name": name, "tags": list(tags[name])})
                else:
                    self._send(404, {"errors": [{"code": "NAME_UNKNOWN", "message": name}]})
            else:
                self._send(404, {"errors": [{"code": "UNSUPPORTED", "message": path}]})

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
