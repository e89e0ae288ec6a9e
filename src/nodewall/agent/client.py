"""The agent's HTTP client for the control plane: the policy long-poll and the status report.

Plain `http.client` (HTTP/1.1 keep-alive, HTTPS with `--ca-file` or the system's CAs), one
connection per client object, so each thread owns its own. Every call has a connect timeout and
a read timeout (a long-poll's is its wait plus a margin), so a server that accepts and then
says nothing is noticed. Outcomes are typed: `Unchanged` (304: the version the agent named),
a decoded `PolicyAnswer`, or an exception: `AuthRefused` (401/403), `NoPolicy` (404),
`Unavailable` (no connection, timeout, 5xx, an answer that is not a usable policy).

The token goes only into the Authorization header: never into a message, a log line or an
exception text.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

from nodewall import __version__
from nodewall.agent.answer import MAX_BYTES, BadAnswer, PolicyAnswer, decode_answer

CONNECT_TIMEOUT = 5.0
#: Seconds a long-poll may take beyond its wait before the server counts as slow.
READ_MARGIN = 15.0
REPORT_TIMEOUT = 10.0


class Unavailable(Exception):
    """The server could not be reached or answered badly; retry later."""


class AuthRefused(Exception):
    """401 or 403: the token is missing, revoked, or not this node's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class NoPolicy(Exception):
    """404: the server has no policy for this node (unknown or removed node)."""


class _Stale(Exception):
    """The connection was closed by the server before it answered."""


@dataclass(frozen=True)
class Unchanged:
    version: str


def check_url(url: str) -> str:
    """The server URL without a trailing slash; ValueError when it is not http(s)://host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{url!r}: no credentials, query or fragment in the server URL")
    try:
        parts.port  # noqa: B018 (raises for a bad port)
    except ValueError as exc:
        raise ValueError(f"{url!r}: {exc}") from None
    return url.rstrip("/")


class ControlPlane:
    """One connection to the control plane, for one node, used by one thread."""

    def __init__(self, url: str, node: str, token: str, ca_file: str | None = None) -> None:
        parts = urlsplit(check_url(url))
        self.node = node
        self._token = token
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._ssl: ssl.SSLContext | None = None
        if self._https:
            self._ssl = ssl.create_default_context(cafile=ca_file)
        self._conn: http.client.HTTPConnection | None = None
        self.last_decode_seconds = 0.0  # of the last policy answer, for the log

    def set_token(self, token: str) -> None:
        self._token = token

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- routes -----------------------------------------------------------------------------
    def fetch_policy(self, version: str | None, wait: float) -> PolicyAnswer | Unchanged:
        """GET the node's policy; with `version`, held up to `wait` seconds until it differs."""
        query = {"version": version, "wait": f"{wait:g}"} if version is not None and wait > 0 \
            else {}
        headers = {"If-None-Match": f'"{version}"'} if version is not None else {}
        path = f"/v1/node/{quote(self.node, safe='')}/policy"
        if query:
            path += "?" + urlencode(query)
        status, body = self._request("GET", path, None, headers, wait + READ_MARGIN)
        if status == 304 and version is not None:
            return Unchanged(version)
        if status != 200:
            self._raise_for(status, body)
        started = time.perf_counter()
        try:
            answer = decode_answer(body, self.node)
        except BadAnswer as exc:
            raise Unavailable(f"bad policy answer: {exc}") from None
        self.last_decode_seconds = time.perf_counter() - started
        return answer

    def report(self, applied_version: str | None, backend: str, error: str | None) -> None:
        """POST what the kernel holds."""
        payload = json.dumps({"applied_version": applied_version, "backend": backend,
                              "error": error}).encode()
        path = f"/v1/node/{quote(self.node, safe='')}/status"
        status, body = self._request("POST", path, payload,
                                     {"Content-Type": "application/json"}, REPORT_TIMEOUT)
        if status != 200:
            self._raise_for(status, body)

    # -- plumbing ---------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(self._host, self._port,
                                                         timeout=CONNECT_TIMEOUT,
                                                         context=self._ssl)
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port,
                                                        timeout=CONNECT_TIMEOUT)
        return self._conn

    def _request(self, method: str, path: str, body: bytes | None, headers: dict[str, str],
                 read_timeout: float) -> tuple[int, bytes]:
        reused = self._conn is not None and self._conn.sock is not None
        for attempt in (1, 2):
            try:
                return self._exchange(method, path, body, headers, read_timeout)
            except _Stale:
                if not reused or attempt == 2:
                    raise Unavailable("connection closed by the server") from None
        raise AssertionError("unreachable")

    def _exchange(self, method: str, path: str, body: bytes | None, headers: dict[str, str],
                  read_timeout: float) -> tuple[int, bytes]:
        conn = self._connection()
        all_headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json",
                       "User-Agent": f"nodewall-agent/{__version__}", **headers}
        try:
            if conn.sock is None:
                conn.connect()
            assert conn.sock is not None
            conn.sock.settimeout(read_timeout)
            conn.request(method, self._prefix + path, body=body, headers=all_headers)
            response = conn.getresponse()
            length = response.getheader("Content-Length")
            if length is not None and length.isdigit() and int(length) > MAX_BYTES:
                raise Unavailable(f"answer of {length} bytes is larger than {MAX_BYTES}")
            data = response.read(MAX_BYTES + 1)
            if len(data) > MAX_BYTES:
                raise Unavailable(f"answer larger than {MAX_BYTES} bytes")
            if response.will_close:
                self.close()
            return response.status, data
        except Unavailable:
            self.close()
            raise
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.close()  # a kept-alive connection the server had closed meanwhile
            raise _Stale() from None
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            self.close()
            raise Unavailable(_describe(exc)) from None

    @staticmethod
    def _raise_for(status: int, body: bytes) -> None:
        message = _server_message(body)
        if status in (401, 403):
            raise AuthRefused(status, message)
        if status == 404:
            raise NoPolicy(message)
        raise Unavailable(f"HTTP {status}: {message}")


def _server_message(body: bytes) -> str:
    """The `message` of an error answer (nodewall's words), or a placeholder; at most 300
    characters, never the raw body (a proxy's page is not worth a log line)."""
    try:
        data = json.loads(body)
        message = data.get("message") if isinstance(data, dict) else None
    except ValueError:
        message = None
    return str(message)[:300] if isinstance(message, str) else f"({len(body)}-byte answer)"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message}"
    if isinstance(exc, http.client.HTTPException):
        return f"bad HTTP answer ({type(exc).__name__})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
