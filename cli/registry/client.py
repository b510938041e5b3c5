"""An OCI distribution (``/v2/``) HTTP client on :mod:`http.client`.

One client per repository. It finds the scheme once (HTTPS; plain HTTP for localhost and
127.0.0.0/8, for ``--tls-verify=false`` and for hosts in ``$LAYERBOX_INSECURE_REGISTRIES``
when HTTPS fails, as Docker treats localhost as insecure), answers 401 challenges with
basic auth or the bearer-token flow (``WWW-Authenticate: Bearer realm=…,service=…,scope=…``),
and follows redirects (blob storage often lives elsewhere). Bodies are streamed: responses
are returned open, uploads read from file objects.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import re
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import BinaryIO

from cli import logs
from cli.errors import UserError
from cli.registry.auth import Credentials

log = logs.get(__name__)

TIMEOUT = 60
PROBE_TIMEOUT = 10
SEND_BLOCK = 1 << 20
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"|(\w+)=([^\s,]+)')


class RegistryError(UserError):
    """A registry refused or failed a request; the message is one line for the user."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class TransferError(RegistryError):
    """The connection broke during a request or a body transfer (worth one retry)."""


def is_local(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def insecure_allowed(host: str, tls_verify: bool | None) -> bool:
    """May we fall back to plain HTTP? ``--tls-verify`` decides when given (Podman's rule)."""
    if tls_verify is not None:
        return not tls_verify
    if is_local(host):
        return True
    listed = os.environ.get("LAYERBOX_INSECURE_REGISTRIES", "")
    return host in [h.strip() for h in listed.split(",") if h.strip()]


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for m in _CHALLENGE_PARAM.finditer(rest):
        key = m.group(1) or m.group(3)
        params[key.lower()] = m.group(2) if m.group(1) else m.group(4)
    return scheme.lower(), params


def _error_message(status: int, body: bytes) -> tuple[str, str | None]:
    """The registry's own words from an OCI error body, or the HTTP reason."""
    try:
        errors = json.loads(body).get("errors") or []
        first = errors[0]
        return first.get("message") or first.get("code", "").lower(), first.get("code")
    except (ValueError, AttributeError, IndexError, TypeError):
        return http.client.responses.get(status, "error").lower(), None


class Response:
    """An open response; read the body (streaming) and close it, or use ``with``."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
                 url: str):
        self._conn = conn
        self._resp = resp
        self.status = resp.status
        self.headers = resp.headers
        self.url = url

    def read(self, n: int = -1) -> bytes:
        try:
            return self._resp.read(n) if n >= 0 else self._resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise TransferError(f"reading from {self.url}: {exc or type(exc).__name__}") from None

    def close(self) -> None:
        self._resp.close()
        self._conn.close()

    def __enter__(self) -> "Response":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Body:
    """A request body: bytes, or a file object read up to ``length`` bytes."""

    data: bytes | BinaryIO
    length: int
    content_type: str = "application/octet-stream"


class RegistryClient:
    def __init__(self, host: str, repository: str, *, credentials: Credentials | None = None,
                 tls_verify: bool | None = None, actions: str = "pull"):
        self.host = host
        self.repository = repository
        self.credentials = credentials
        self.tls_verify = tls_verify
        self.actions = actions
        self.scheme: str | None = None
        self._authorization: str | None = None
        self._basic_ok = False

    # -- connection ---------------------------------------------------------------

    def _connection(self, scheme: str, netloc: str,
                    timeout: float = TIMEOUT) -> http.client.HTTPConnection:
        if scheme == "https":
            context = ssl.create_default_context()
            if self.tls_verify is False:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(netloc, timeout=timeout, context=context,
                                               blocksize=SEND_BLOCK)
        return http.client.HTTPConnection(netloc, timeout=timeout, blocksize=SEND_BLOCK)

    def _send(self, method: str, url: str, headers: dict, body: Body | None,
              timeout: float = TIMEOUT) -> Response:
        parts = urllib.parse.urlsplit(url)
        conn = self._connection(parts.scheme, parts.netloc, timeout)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = dict(headers)
        payload = None
        if body is not None:
            headers["Content-Length"] = str(body.length)
            headers["Content-Type"] = body.content_type
            payload = body.data
        elif method in ("PUT", "POST", "PATCH"):
            headers["Content-Length"] = "0"
        try:
            conn.request(method, target, body=payload, headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise TransferError(f"{method} {url}: {_reason(exc)}") from None
        return Response(conn, resp, url)

    def _ensure_scheme(self) -> None:
        if self.scheme is not None:
            return
        failure = None
        for scheme in ("https", "http"):
            if scheme == "http" and not insecure_allowed(self.host, self.tls_verify):
                break
            try:
                # A plain-HTTP server may never answer a TLS hello: do not wait long for it.
                timeout = PROBE_TIMEOUT if scheme == "https" and insecure_allowed(
                    self.host, self.tls_verify) else TIMEOUT
                with self._send("GET", f"{scheme}://{self.host}/v2/", {}, None,
                                timeout) as resp:
                    resp.read()
                    if scheme == "http" or resp.status in (200, 401):
                        self.scheme = scheme
                        log.debug("registry %s speaks %s (ping %d)", self.host, scheme,
                                  resp.status)
                        return
                    failure = f"unexpected status {resp.status} from /v2/"
            except TransferError as exc:
                log.debug("ping %s over %s: %s", self.host, scheme, exc)
                failure = str(exc)
        raise RegistryError(f"cannot reach registry {self.host}: {failure}")

    # -- auth -----------------------------------------------------------------------

    def _scope(self, extra: tuple[str, ...]) -> str:
        own = (f"repository:{self.repository}:{self.actions}",) if self.repository else ()
        return " ".join(own + extra)

    def _answer_challenge(self, header: str, extra_scopes: tuple[str, ...]) -> bool:
        """Set our Authorization for a 401's challenge; False if we have nothing new to try."""
        scheme, params = parse_challenge(header or "")
        if scheme == "basic":
            if self.credentials is None or self._basic_ok:
                return False
            self._authorization = self.credentials.basic_header()
            self._basic_ok = True
            return True
        if scheme == "bearer" and params.get("realm"):
            token = self._fetch_token(params, extra_scopes)
            new = f"Bearer {token}"
            if new == self._authorization:
                return False
            self._authorization = new
            return True
        return False

    def _fetch_token(self, params: dict[str, str], extra_scopes: tuple[str, ...]) -> str:
        query = [("service", params["service"])] if params.get("service") else []
        scopes = [s for s in (params.get("scope") or "").split(" ") if s]
        for scope in filter(None, self._scope(extra_scopes).split(" ")):
            if scope not in scopes:
                scopes.append(scope)
        query += [("scope", s) for s in scopes]
        if self.credentials is not None:
            query.append(("account", self.credentials.username))
        url = params["realm"] + ("&" if "?" in params["realm"] else "?") + \
            urllib.parse.urlencode(query)
        headers = {"Authorization": self.credentials.basic_header()} if self.credentials else {}
        with self._send("GET", url, headers, None) as resp:
            body = resp.read()
            if resp.status == 401:
                raise RegistryError(f"unauthorized: incorrect username or password for "
                                    f"{self.host}", status=401)
            if resp.status != 200:
                raise RegistryError(f"token server {params['realm']} answered {resp.status}",
                                    status=resp.status)
        try:
            doc = json.loads(body)
            return doc.get("token") or doc["access_token"]
        except (ValueError, KeyError, AttributeError):
            raise RegistryError(f"token server {params['realm']} sent no token") from None

    # -- requests -------------------------------------------------------------------

    def url(self, path: str) -> str:
        self._ensure_scheme()
        if path.startswith(("http://", "https://")):
            return path
        if not path.startswith("/"):
            path = f"/v2/{self.repository}/{path}"
        return f"{self.scheme}://{self.host}{path}"

    def request(self, method: str, path: str, *, headers: dict | None = None,
                body: Body | None = None, extra_scopes: tuple[str, ...] = (),
                redirects: int = 5) -> Response:
        """Send a request, answering auth challenges and following redirects.

        A file body is rewound for a retry after a 401, so pass seekable files.
        """
        url = self.url(path)
        start = body.data.tell() if body is not None and hasattr(body.data, "tell") else None
        for _ in range(3):
            send_headers = dict(headers or {})
            same_host = urllib.parse.urlsplit(url).netloc == self.host
            if self._authorization and same_host:
                send_headers["Authorization"] = self._authorization
            resp = self._send(method, url, send_headers, body)
            if resp.status == 401 and same_host:
                challenge = resp.headers.get("WWW-Authenticate", "")
                resp.read()
                resp.close()
                if not self._answer_challenge(challenge, extra_scopes):
                    raise RegistryError(f"unauthorized: authentication required for {self.host}"
                                        if self.credentials is None else
                                        f"unauthorized: incorrect username or password for "
                                        f"{self.host}", status=401)
                if start is not None:
                    body.data.seek(start)
                continue
            if resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD") \
                    and redirects > 0:
                location = urllib.parse.urljoin(url, resp.headers.get("Location", ""))
                resp.read()
                resp.close()
                url, redirects = location, redirects - 1
                continue
            return resp
        raise RegistryError(f"{method} {url}: too many authentication round trips")

    def check(self, resp: Response, ok: tuple[int, ...], what: str) -> Response:
        """Return RESP if its status is in OK; else close it and raise a one-line error."""
        if resp.status in ok:
            return resp
        body = resp.read(1 << 16) if resp.status != 405 else b""
        resp.close()
        message, code = _error_message(resp.status, body)
        raise RegistryError(f"{what}: {message}", status=resp.status, code=code)

    def location(self, resp: Response) -> str:
        loc = resp.headers.get("Location")
        if not loc:
            raise RegistryError(f"registry {self.host} sent no upload location")
        return urllib.parse.urljoin(resp.url, loc)

    def ping(self) -> None:
        """Check that the registry answers and our credentials work (``login``)."""
        with self.check(self.request("GET", "/v2/"), (200,), f"login to {self.host}") as resp:
            resp.read()


def with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"no such host ({exc.strerror})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc})"
    if isinstance(exc, http.client.IncompleteRead):
        return "connection closed before the body was complete"
    return str(exc) or type(exc).__name__
