"""A local stand-in for the Hugging Face Hub's file endpoints, for download tests with no network.

It answers what ``hf_hub_download`` asks, the way the Hub does:

- ``HEAD``/``GET /datasets/{repo}/resolve/{revision}/{path}`` on the "hub" server. Small
  (git) files answer 200 with ``X-Repo-Commit``, ``ETag`` = git blob sha1 and the body.
  Large (LFS) files answer 302 to the "CDN" server, carrying ``X-Repo-Commit``,
  ``X-Linked-Etag`` = sha256 and ``X-Linked-Size``, as the Hub does for LFS blobs; a missing
  path answers 404 with ``X-Error-Code: EntryNotFound``.
- ``GET /cdn/{sha256}`` on the "CDN" server (another port, so another origin, so the
  client does not follow the redirect on HEAD) serves the bytes, with ``Range`` support.

Faults can be queued per path: ``"drop"`` sends the headers and half the body, then closes
the connection; ``"corrupt"`` serves the right length with flipped bytes.

Both servers bind 127.0.0.1 on free ports, use one daemon thread per connection with a
socket timeout, and stop in ``close()`` — nothing outlives the test that made them.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    def __init__(self, repo_id: str, files: dict[str, bytes], is_lfs: Callable[[str], bool]) -> None:
        self.repo_id = repo_id
        self.files = dict(files)
        self.is_lfs = is_lfs
        self.faults: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str, str, str | None]] = []  # (server, method, path in repo, Range)
        self._lock = threading.Lock()
        self._hub = self._serve(self._handle_hub)
        self._cdn = self._serve(self._handle_cdn)
        self.endpoint = f"http://127.0.0.1:{self._hub.server_address[1]}"
        self._cdn_base = f"http://127.0.0.1:{self._cdn.server_address[1]}"

    # ----- test helpers
    def gets(self, path: str) -> list[str | None]:
        """The Range header of every request for the bytes of ``path`` (None = the whole file)."""
        body_server = "cdn" if self.is_lfs(path) else "hub"
        with self._lock:
            return [rng for server, method, p, rng in self.requests
                    if server == body_server and method == "GET" and p == path]

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def close(self) -> None:
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()

    # ----- servers
    def _serve(self, handle: Callable[[BaseHTTPRequestHandler, str], None]) -> ThreadingHTTPServer:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a stuck client cannot hold a server thread forever

            def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
                handle(self, "HEAD")

            def do_GET(self) -> None:  # noqa: N802
                handle(self, "GET")

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.hub = hub  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return server

    def _log(self, server: str, method: str, path: str, rng: str | None) -> None:
        with self._lock:
            self.requests.append((server, method, path, rng))

    def _handle_hub(self, h: BaseHTTPRequestHandler, method: str) -> None:
        m = re.fullmatch(r"/datasets/(.+?)/resolve/([^/]+)/(.+)", unquote(h.path.split("?")[0]))
        if not m or m.group(1) != self.repo_id:
            return self._error(h, 404, "RepoNotFound")
        revision, path = m.group(2), m.group(3)
        self._log("hub", method, path, h.headers.get("Range"))
        if revision not in ("main", COMMIT):
            return self._error(h, 404, "RevisionNotFound")
        if path not in self.files:
            return self._error(h, 404, "EntryNotFound")
        data = self.files[path]
        if self.is_lfs(path):
            sha = hashlib.sha256(data).hexdigest()
            h.send_response(302)
            h.send_header("Location", f"{self._cdn_base}/cdn/{sha}")
            h.send_header("X-Repo-Commit", COMMIT)
            h.send_header("X-Linked-Etag", f'"{sha}"')
            h.send_header("X-Linked-Size", str(len(data)))
            h.send_header("ETag", f'"{git_blob_sha1(data)}"')  # the pointer's; the client prefers X-Linked-Etag
            h.send_header("Content-Length", "0")
            h.end_headers()
            return None
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{git_blob_sha1(data)}"'}
        return self._send_body(h, method, path, data, headers)

    def _handle_cdn(self, h: BaseHTTPRequestHandler, method: str) -> None:
        sha = h.path.rsplit("/", 1)[-1]
        path = next((p for p, d in self.files.items() if hashlib.sha256(d).hexdigest() == sha), None)
        if path is None:
            return self._error(h, 404, "")
        self._log("cdn", method, path, h.headers.get("Range"))
        return self._send_body(h, method, path, self.files[path], {})

    def _send_body(self, h: BaseHTTPRequestHandler, method: str, path: str, data: bytes,
                   headers: dict[str, str]) -> None:
        fault = None
        if method == "GET":
            with self._lock:
                queue = self.faults.get(path)
                fault = queue.pop(0) if queue else None
        if fault == "corrupt":
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        start = 0
        rng = h.headers.get("Range")
        if rng and method == "GET":
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))  # the only form the client sends
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            h.send_response(200)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(data) - start))
        h.end_headers()
        if method == "HEAD":
            return
        body = data[start:]
        if fault == "drop":
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        h.wfile.write(body)

    @staticmethod
    def _error(h: BaseHTTPRequestHandler, status: int, code: str) -> None:
        h.send_response(status)
        if code:
            h.send_header("X-Error-Code", code)
        h.send_header("X-Repo-Commit", COMMIT)
        h.send_header("Content-Length", "0")
        h.end_headers()
