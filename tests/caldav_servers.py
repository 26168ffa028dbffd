"""Real CalDAV servers for tests: Radicale and Xandikos in subprocesses on loopback.

Each server gets a free 127.0.0.1 port and a temporary storage folder, is polled until it
answers, and is stopped (terminate, then kill) when the session ends. `FaultProxy` is a tiny
reverse proxy to put in front of one: it forwards every request unchanged unless told to
answer 503 / 429, drop the connection before forwarding, drop it *after* the server applied
the request (a lost response), or demand HTTP Digest auth.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx

READY_TIMEOUT = 20.0
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class DavServer:
    """A running server. `home` is the calendar home path of `username` on it."""

    kind: str
    base_url: str
    home: str
    username: str
    password: str
    process: subprocess.Popen[bytes]
    storage: Path
    started_in: float = 0.0
    version: str = ""

    def client(self) -> httpx.Client:
        """A plain client that bypasses the connector: for planting and inspecting data."""
        return httpx.Client(base_url=self.base_url, auth=(self.username, self.password))

    def calendar_url(self, name: str) -> str:
        return f"{self.base_url}{self.home}{name}/"

    def new_calendar(self, name: str | None = None) -> str:
        """MKCALENDAR a fresh, empty calendar; returns its name (a calendar id)."""
        name = name or f"cal-{uuid.uuid4().hex[:10]}"
        with self.client() as client:
            response = client.request("MKCALENDAR", self.calendar_url(name))
        if response.status_code != 201:
            raise RuntimeError(f"MKCALENDAR {name} on {self.kind}: {response.status_code}")
        return name

    def put_raw(self, calendar: str, resource: str, body: str, **headers: str) -> httpx.Response:
        with self.client() as client:
            return client.put(
                self.calendar_url(calendar) + resource,
                content=body.encode(),
                headers={"Content-Type": "text/calendar; charset=utf-8", **headers},
            )

    def get_raw(self, calendar: str, resource: str) -> httpx.Response:
        with self.client() as client:
            return client.get(self.calendar_url(calendar) + resource)

    def list_resources(self, calendar: str) -> list[str]:
        """Names of the resources in a calendar, read with a Depth: 1 PROPFIND."""
        body = b'<?xml version="1.0"?><propfind xmlns="DAV:"><prop><getetag/></prop></propfind>'
        with self.client() as client:
            response = client.request(
                "PROPFIND",
                self.calendar_url(calendar),
                content=body,
                headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"},
            )
        response.raise_for_status()
        hrefs = re.findall(r"<(?:\w+:)?href>([^<]+)</(?:\w+:)?href>", response.text)
        prefix = self.home + calendar + "/"
        return sorted(h[len(prefix) :] for h in hrefs if h.startswith(prefix) and h != prefix)

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.storage, ignore_errors=True)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log.read_text()}")
        try:
            httpx.request("OPTIONS", url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    stop_process(process)
    raise RuntimeError(f"{what} did not answer within {READY_TIMEOUT}s:\n{log.read_text()}")


def _module_version(module: str) -> str:
    from importlib.metadata import version

    return version(module)


def start_radicale(*, password: str | None = None, username: str = "tech") -> DavServer:
    """Radicale with no auth (any user name is accepted), or htpasswd with a plain password."""
    storage = Path(tempfile.mkdtemp(prefix="radicale-"))
    log = storage / "server.log"
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "radicale",
        "--config",
        "",
        "--storage-filesystem-folder",
        str(storage / "collections"),
        "--server-hosts",
        f"{HOST}:{port}",
        "--logging-level",
        "error",
    ]
    if password is None:
        args += ["--auth-type", "none"]
    else:
        htpasswd = storage / "users"
        htpasswd.write_text(f"{username}:{password}\n")
        args += [
            "--auth-type",
            "htpasswd",
            "--auth-htpasswd-filename",
            str(htpasswd),
            "--auth-htpasswd-encryption",
            "plain",
            "--auth-delay",
            "0",  # the default 1 s delay per refused login would only slow the test down
        ]
    began = time.monotonic()
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=storage)
    base_url = f"http://{HOST}:{port}"
    _wait_ready(process, base_url + "/", log, "radicale")
    return DavServer(
        kind="radicale",
        base_url=base_url,
        home=f"/{username}/",
        username=username,
        password=password or "radicale-accepts-anything",
        process=process,
        storage=storage,
        started_in=time.monotonic() - began,
        version=_module_version("radicale"),
    )


def start_xandikos() -> DavServer:
    """Xandikos with its default layout: principal /user/, calendar home /user/calendars/.

    It serves no auth over plain HTTP (its htpasswd mode insists on TLS), so requests carry
    Basic credentials it ignores, as a reverse proxy in front of it would strip them.
    """
    storage = Path(tempfile.mkdtemp(prefix="xandikos-"))
    log = storage / "server.log"
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "xandikos",
        "serve",
        "--defaults",
        "-d",
        str(storage / "dav"),
        "-l",
        HOST,
        "-p",
        str(port),
        "--state-dir",
        str(storage / "state"),
        "--no-detect-systemd",
    ]
    began = time.monotonic()
    env = {**os.environ, "XDG_DATA_HOME": str(storage / "xdg")}
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=storage, env=env)
    base_url = f"http://{HOST}:{port}"
    _wait_ready(process, base_url + "/", log, "xandikos")
    return DavServer(
        kind="xandikos",
        base_url=base_url,
        home="/user/calendars/",
        username="user",
        password="xandikos-ignores-it",
        process=process,
        storage=storage,
        started_in=time.monotonic() - began,
        version=_module_version("xandikos"),
    )


# --- fault-injecting reverse proxy ----------------------------------------------------------

PASS = "pass"
UNAVAILABLE = "503"
THROTTLE = "429"
DROP_BEFORE = "drop_before"  # connection closed before the request reaches the server
DROP_AFTER = "drop_after"  # the server applied the request; its response never arrives
FAULTS = (UNAVAILABLE, THROTTLE, DROP_BEFORE, DROP_AFTER)

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
}


@dataclass
class FaultProxy:
    """Reverse proxy to `upstream` with fault knobs. Thread-safe; start() / stop()."""

    upstream: str
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULTS
    seed: int = 1
    retry_after: str = "0"
    # Forced actions for the next matching requests: (METHOD or "*", action), in order.
    script: deque[tuple[str, str]] = field(default_factory=deque)
    # When set, requests must carry valid HTTP Digest credentials for this (user, password).
    digest: tuple[str, str] | None = None
    # Requests whose method and body match are answered with this status instead (e.g. 403
    # for calendar-query REPORTs, as on a calendar shared with free-busy rights only).
    refuse: tuple[str, bytes, int] | None = None
    log: list[tuple[str, str, str, int | None]] = field(default_factory=list)
    url: str = ""
    delay: float = 0.0  # seconds each forwarded request is held, so overlaps show
    in_flight: int = 0
    max_in_flight: int = 0  # most requests being handled at once

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._nonces: set[str] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- knobs ---

    def force(self, *actions: tuple[str, str]) -> None:
        with self._lock:
            self.script.extend(actions)

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(action for _, _, action, _ in self.log)

    def statuses(self, method: str) -> list[int | None]:
        with self._lock:
            return [status for m, _, _, status in self.log if m == method]

    def _decide(self, method: str) -> str:
        with self._lock:
            for i, (wanted, action) in enumerate(self.script):
                if wanted in ("*", method):
                    del self.script[i]
                    return action
            if self.fault_rate and self._rng.random() < self.fault_rate:
                return self._rng.choice(self.faults)
            return PASS

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _record(self, method: str, path: str, action: str, status: int | None) -> None:
        with self._lock:
            self.log.append((method, path, action, status))

    # --- digest (RFC 7616, MD5, qop=auth) ---

    def _challenge(self) -> str:
        nonce = secrets.token_hex(16)
        with self._lock:
            self._nonces.add(nonce)
        return f'Digest realm="fieldsync-test", nonce="{nonce}", qop="auth", algorithm=MD5'

    def _digest_ok(self, method: str, header: str | None) -> bool:
        assert self.digest is not None
        if not header or not header.lower().startswith("digest "):
            return False
        parts = dict(
            (k.lower(), v.strip('"'))
            for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', header[len("digest ") :])
        )
        user, password = self.digest
        with self._lock:
            known = parts.get("nonce") in self._nonces
        if not known or parts.get("username") != user:
            return False

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5(f"{user}:{parts.get('realm')}:{password}")
        ha2 = md5(f"{method}:{parts.get('uri')}")
        expected = md5(
            f"{ha1}:{parts.get('nonce')}:{parts.get('nc')}:{parts.get('cnonce')}:"
            f"{parts.get('qop')}:{ha2}"
        )
        return secrets.compare_digest(expected, parts.get("response", ""))

    # --- server ---

    def start(self) -> FaultProxy:
        proxy = self
        target = urlsplit(self.upstream)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                proxy._enter()
                try:
                    self._proxy()
                finally:
                    proxy._leave()

            def _proxy(self) -> None:
                method = self.command
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if proxy.digest is not None:
                    if not proxy._digest_ok(method, self.headers.get("Authorization")):
                        proxy._record(method, self.path, "digest_challenge", 401)
                        self._reply(401, {"WWW-Authenticate": proxy._challenge()}, b"")
                        return
                    # The server behind us accepts any Basic user: pass the name on.
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                    token = base64.b64encode(f"{proxy.digest[0]}:-".encode()).decode()
                    headers["Authorization"] = f"Basic {token}"
                if proxy.refuse is not None:
                    refused_method, marker, status = proxy.refuse
                    if method == refused_method and marker in body:
                        proxy._record(method, self.path, "refused", status)
                        self._reply(status, {"Content-Type": "text/plain"}, b"Forbidden")
                        return
                action = proxy._decide(method)
                if action == DROP_BEFORE:
                    proxy._record(method, self.path, action, None)
                    self.close_connection = True
                    return
                if action in (UNAVAILABLE, THROTTLE):
                    status = 503 if action == UNAVAILABLE else 429
                    proxy._record(method, self.path, action, status)
                    self._reply(
                        status,
                        {"Retry-After": proxy.retry_after, "Content-Type": "text/plain"},
                        b"try again later",
                    )
                    return
                if proxy.delay:
                    time.sleep(proxy.delay)
                conn = http.client.HTTPConnection(target.hostname or HOST, target.port, timeout=30)
                try:
                    conn.request(method, self.path, body=body, headers=headers)
                    upstream = conn.getresponse()
                    data = upstream.read()
                    status = upstream.status
                    reply_headers = {
                        k: v for k, v in upstream.getheaders() if k.lower() not in _HOP_BY_HOP
                    }
                finally:
                    conn.close()
                proxy._record(method, self.path, action, status)
                if action == DROP_AFTER:
                    self.close_connection = True
                    return
                self._reply(status, reply_headers, data)

            do_GET = do_PUT = do_DELETE = do_PROPFIND = do_REPORT = _handle
            do_OPTIONS = do_MKCALENDAR = do_HEAD = do_POST = _handle

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{HOST}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
