"""A small local HTTP API for the examples, since they cannot reach the internet.

`LocalApi` serves ``GET /data`` on 127.0.0.1 from a background thread. It can fail the
first requests with 503 (to show retries) and answer slowly (to show monitoring)::

    with LocalApi(failures=2) as api:
        os.environ[API_BASE_ENV] = api.base_url
        ...                      # fetches of https://api.example.com/data land here
    print(api.statuses)          # [503, 503, 200]
"""

from __future__ import annotations

import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

__all__ = ["DATA_PATH", "PAYLOAD", "LocalApi"]

DATA_PATH = "/data"

_POLL_INTERVAL = 0.05  # seconds; how soon the server notices it is asked to stop

PAYLOAD: dict[str, Any] = {
    "source": "qtforge-examples local API",
    "items": [
        {"id": 1, "name": "sensor-north", "reading": 21.4},
        {"id": 2, "name": "sensor-south", "reading": 19.8},
        {"id": 3, "name": "sensor-east", "reading": 22.1},
    ],
}


class LocalApi:
    """Serves `PAYLOAD` as JSON at `DATA_PATH`; any other path is 404.

    Args:
        failures: How many requests to `DATA_PATH` are answered 503 before it works.
        delay: Seconds to wait before answering each request.

    Attributes:
        statuses: The status of every answered request, in order.
    """

    def __init__(self, failures: int = 0, delay: float = 0.0) -> None:
        self.failures = failures
        self.delay = delay
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name="qtforge-examples-api",
        )

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _answer(self, path: str) -> tuple[HTTPStatus, bytes]:
        time.sleep(self.delay)
        with self._lock:
            if path != DATA_PATH:
                status = HTTPStatus.NOT_FOUND
            elif self.failures > 0:
                self.failures -= 1
                status = HTTPStatus.SERVICE_UNAVAILABLE
            else:
                status = HTTPStatus.OK
            self.statuses.append(status.value)
        body = PAYLOAD if status is HTTPStatus.OK else {"error": status.phrase}
        return status, json.dumps(body).encode()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _handler_for(api: LocalApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = api._answer(self.path.partition("?")[0])
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the examples' output to what they print themselves."""

    return Handler
