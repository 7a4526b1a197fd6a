"""Load for the benchmark: wrk runs (parsed) and a 1 GiB streaming client, all to 127.0.0.1.

``run_wrk`` drives a URL with wrk for a bounded duration and returns requests/s, latency
percentiles, the request count and error counts. ``upload`` and ``download`` push or pull one
large body through a blocking socket with httptools parsing the response, whatever framing
(Content-Length or chunked) the proxy chose.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from dataclasses import dataclass

import httptools

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_LATENCY = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_REQUESTS = re.compile(r"^\s+(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.MULTILINE)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run; latencies in milliseconds."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int


def parse_wrk(output: str) -> WrkResult:
    """Read wrk's --latency report; raise ValueError when a figure is missing."""
    latency = {int(p): float(v) * _UNITS[u] for p, v, u in _LATENCY.findall(output)}
    requests = _REQUESTS.search(output)
    rate = _RATE.search(output)
    if requests is None or rate is None or set(latency) != {50, 75, 90, 99}:
        raise ValueError(f"unexpected wrk output:\n{output}")
    non_2xx = _NON_2XX.search(output)
    errors = _SOCKET_ERRORS.search(output)
    return WrkResult(
        requests=int(requests.group(1)),
        seconds=float(requests.group(2)) * _UNITS[requests.group(3)] / 1e3,
        rps=float(rate.group(1)),
        p50_ms=latency[50],
        p75_ms=latency[75],
        p90_ms=latency[90],
        p99_ms=latency[99],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def run_wrk(url: str, connections: int, seconds: float, timeout_s: float = 5.0) -> WrkResult:
    """``wrk -t1 -c<connections> -d<seconds> --latency url`` (the caller's CPU pinning applies)."""
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        f"--timeout={timeout_s:g}s",
        "--latency",
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


@dataclass(frozen=True, slots=True)
class StreamResult:
    """One large transfer: bytes moved, seconds from first byte sent to response end."""

    direction: str
    nbytes: int
    seconds: float
    status: int

    @property
    def mib_per_s(self) -> float:
        return self.nbytes / (1 << 20) / self.seconds if self.seconds > 0 else 0.0


class _Response:
    """httptools callbacks: status, body bytes counted (or kept when small), completion."""

    def __init__(self, keep_body: bool) -> None:
        self.keep_body = keep_body
        self.body = bytearray()
        self.body_bytes = 0
        self.complete = False

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.keep_body:
            self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def _read_response(sock: socket.socket, keep_body: bool) -> tuple[int, _Response]:
    response = _Response(keep_body)
    parser = httptools.HttpResponseParser(response)
    while not response.complete:
        data = sock.recv(1 << 20)
        if not data:
            raise ConnectionError("connection closed before the response ended")
        parser.feed_data(data)
    return parser.get_status_code(), response


def upload(port: int, path: str, nbytes: int, timeout_s: float = 300.0) -> StreamResult:
    """POST nbytes (Content-Length) to path; the backend must report having received them all."""
    chunk = memoryview(b"\x5a" * (1 << 20))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        started = time.perf_counter()
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {nbytes}\r\n\r\n".encode()
        )
        left = nbytes
        try:
            while left > 0:
                piece = min(left, len(chunk))
                sock.sendall(chunk[:piece])
                left -= piece
        except OSError:
            pass  # the proxy answered early (413, 502...): read its answer below
        status, response = _read_response(sock, keep_body=True)
        seconds = time.perf_counter() - started
    if status != 200 or left:
        answer = bytes(response.body[:200])
        raise RuntimeError(f"upload: status {status}, {left} bytes unsent: {answer!r}")
    received = json.loads(response.body)["received"]
    if received != nbytes:
        raise RuntimeError(f"upload: backend received {received} of {nbytes} bytes")
    return StreamResult("upload", nbytes, seconds, status)


def download(port: int, path: str, nbytes: int, timeout_s: float = 300.0) -> StreamResult:
    """GET path, which must answer exactly nbytes of body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        started = time.perf_counter()
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        status, response = _read_response(sock, keep_body=False)
        seconds = time.perf_counter() - started
    if status != 200 or response.body_bytes != nbytes:
        raise RuntimeError(f"download: status {status}, {response.body_bytes} of {nbytes} bytes")
    return StreamResult("download", nbytes, seconds, status)
