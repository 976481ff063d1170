"""HTTP plugins for the retry example: a real GET, and a cache to fall back on.

``http_client.fetch(url)`` performs the request with `urllib` in one of qtforge's worker
threads (it is a plain method) and raises on an HTTP error status, so a step with
``max_retries`` tries again. There is no internet here, so the scheme and host of every
URL can be redirected to a local server through the environment::

    QTFORGE_EXAMPLES_API_BASE=http://127.0.0.1:8000  # https://api.example.com/data
                                                      # -> http://127.0.0.1:8000/data
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["API_BASE_ENV", "CacheReader", "HttpClient", "HttpStatusError", "redirect_url"]

API_BASE_ENV = "QTFORGE_EXAMPLES_API_BASE"
"""Environment variable: a base URL that replaces the scheme and host of fetched URLs."""

_RETRYABLE_CLIENT_ERRORS = frozenset({408, 425, 429})


class HttpStatusError(Exception):
    """The server answered with an error status.

    Server errors (5xx) and 408/425/429 may go away on retry; other client errors (4xx)
    will not, so they are marked ``non_retryable`` and qtforge does not retry them.
    """

    def __init__(self, url: str, status: int, reason: str) -> None:
        super().__init__(f"GET {url} failed: HTTP {status} {reason}")
        self.url = url
        self.status = status
        self.reason = reason

    @property
    def non_retryable(self) -> bool:
        return 400 <= self.status < 500 and self.status not in _RETRYABLE_CLIENT_ERRORS


def redirect_url(url: str, base: str | None = None) -> str:
    """`url` with its scheme and host replaced by `base`'s (and `base`'s path prefixed).

    `base` defaults to the ``QTFORGE_EXAMPLES_API_BASE`` environment variable; without
    one, `url` is returned as it is.
    """
    base = os.environ.get(API_BASE_ENV) if base is None else base
    if not base:
        return url
    target, parts = urlsplit(base), urlsplit(url)
    path = target.path.rstrip("/") + parts.path
    return urlunsplit((target.scheme, target.netloc, path, parts.query, parts.fragment))


class HttpClient:
    """Fetches URLs with `urllib` (a plain method: qtforge runs it in a worker thread)."""

    def fetch(self, url: str, request_timeout: float = 10.0) -> dict[str, Any]:
        """GET `url` (redirected by `redirect_url`).

        Args:
            url: The URL to fetch.
            request_timeout: Seconds to wait for the connection and for each read.

        Returns:
            ``data`` (the parsed body if it is JSON, else its text), ``status_code`` and
            ``url`` (the URL actually fetched).

        Raises:
            HttpStatusError: The server answered with a 4xx or 5xx status.
            urllib.error.URLError: The server could not be reached.
        """
        target = redirect_url(url)
        request = urllib.request.Request(target, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=request_timeout) as response:
                body = response.read()
                status = response.status
                is_json = response.headers.get_content_type() == "application/json"
                charset = response.headers.get_content_charset() or "utf-8"
        except urllib.error.HTTPError as error:
            error.close()
            raise HttpStatusError(target, error.code, error.reason) from None
        text = body.decode(charset)
        return {"data": json.loads(text) if is_json else text, "status_code": status, "url": target}


class CacheReader:
    """Serves data from a cache: the freshly fetched copy, or a JSON file."""

    def read_cached(self, data: Any = None, cache_path: str = "cache.json") -> dict[str, Any]:
        """The cached data.

        Args:
            data: Data fetched upstream (the ``data`` key of `HttpClient.fetch`); when
                present it is the freshest copy and is served as it is.
            cache_path: The JSON file read when there is no `data`.

        Returns:
            ``cached_data`` and ``cache_source`` (``"upstream"`` or the file's path).
        """
        if data is not None:
            return {"cached_data": data, "cache_source": "upstream"}
        cached = json.loads(Path(cache_path).read_text(encoding="utf-8"))
        return {"cached_data": cached, "cache_source": cache_path}
