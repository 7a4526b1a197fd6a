"""The access log: one JSON line per request, queued in memory and written in batches.

Building a structlog event per request costs tens of microseconds; an access line here is one
bytes %-format (route, upstream and client names JSON-quoted ahead of time) appended to a list,
and the batch is written every `flush_interval` (5 ms by default) in one write.
Lines are JSON, so a CR or LF in a path or header can never forge a second line. Credentials are
never logged: the line holds no header values at all except the request id.
"""

from __future__ import annotations

import asyncio
import sys
import time
from json.encoder import encode_basestring_ascii
from typing import IO, Final

__all__ = ["AccessLog"]

_FIELDS: Final = (
    "request_id",
    "method",
    "path",
    "route",
    "upstream",
    "status",
    "duration_ms",
    "bytes",
    "client",
    "fallback",
    "error",
)
_KEYS: Final = tuple(f',"{name}":' for name in _FIELDS)
_DURATION: Final = _FIELDS.index("duration_ms")
quote_json = encode_basestring_ascii  # a str as a JSON string literal, ASCII only


# ".000" to ".999": the fraction of a millisecond figure, by its microseconds.
_FRACTIONS: Final = tuple(f".{fraction:03d}" for fraction in range(1000))
_FRACTIONS_B: Final = tuple(fraction.encode("ascii") for fraction in _FRACTIONS)


def milliseconds(microseconds: int) -> str:
    """``1234`` -> ``"1.234"``: a JSON number of milliseconds without float formatting."""
    whole = microseconds // 1000
    return str(whole) + _FRACTIONS[microseconds - whole * 1000]


class AccessLog:
    """Queue of access lines flushed by a loop timer; `close()` flushes what is left.

    A queued line is everything after its timestamp, as ASCII bytes; `flush()` puts one
    timestamp in front of every line of the batch (all of them were answered within that flush
    interval). A file given by `path` is written as bytes; a text stream (stdout, tests) gets
    the batch decoded.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        path: str | None = None,
        flush_interval: float = 0.005,
        enabled: bool = True,
        max_queued: int = 100_000,
    ) -> None:
        self.enabled = enabled
        self._file: IO[bytes] | None = None
        self._text: IO[str] | None = None
        if path:
            self._file = open(path, "ab")  # noqa: SIM115  (closed by close())
        else:
            self._text = stream or sys.stdout
        self._interval = flush_interval
        self._queue: list[bytes] = []
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.max_queued = max_queued
        self.dropped = 0

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def proxied(
        self,
        request_id: bytes,
        method: bytes,
        path: str,
        route_json: bytes,
        upstream_json: bytes,
        status: int,
        duration_us: int,
        size: int,
        client_json: bytes,
    ) -> None:
        """Queue the common line: a request answered by an upstream, no fallback, no error.

        `request_id`, `method` and `path` need no escaping: the id is generated, or checked
        against a safe alphabet when it came from the client; the method is an HTTP token (the
        parser accepts no other); the path is normalised (`strangler.pathnorm`: printable ASCII,
        with `"` percent-encoded and `\\` refused). `route_json`, `upstream_json` and
        `client_json` are already JSON string literals (`quote_json`, ASCII), rendered once per
        route, upstream and connection. One bytes %-format: one sized allocation when compiled.
        """
        if self.enabled:
            whole = duration_us // 1000
            self._queue_line(
                b',"request_id":"%s","method":"%s","path":"%s","route":%s,"upstream":%s,'
                b'"status":%d,"duration_ms":%d%s,"bytes":%d,"client":%s}'
                % (
                    request_id,
                    method,
                    path.encode("ascii"),
                    route_json,
                    upstream_json,
                    status,
                    whole,
                    _FRACTIONS_B[duration_us - whole * 1000],
                    size,
                    client_json,
                )
            )

    def log(self, *fields: object) -> None:
        """Queue one line; fields in the order of `_FIELDS`, None ones left out.

        `duration_ms` is given in integer microseconds; strings are JSON-escaped here.
        """
        if not self.enabled:
            return
        parts = []
        for index, (key, value) in enumerate(zip(_KEYS, fields, strict=False)):
            if value is None:
                continue
            parts.append(key)
            if index == _DURATION and type(value) is int:
                parts.append(milliseconds(value))
            else:
                parts.append(quote_json(value) if type(value) is str else repr(value))
        parts.append("}")
        self._queue_line("".join(parts).encode("ascii"))

    def _queue_line(self, tail: bytes) -> None:
        queue = self._queue
        if len(queue) >= self.max_queued:
            self.dropped += 1
            return
        queue.append(tail)
        if self._handle is None and self._loop is not None:
            self._handle = self._loop.call_later(self._interval, self.flush)

    def flush(self) -> None:
        self._handle = None
        queue, self._queue = self._queue, []
        if not queue:
            return
        head = b'\n{"event":"access","ts":' + repr(round(time.time(), 3)).encode("ascii")
        data = head[1:] + head.join(queue) + b"\n"
        try:
            if self._file is not None:
                self._file.write(data)
                self._file.flush()
            elif self._text is not None:
                self._text.write(data.decode("ascii"))
                self._text.flush()
        except (OSError, ValueError):
            self.dropped += len(queue)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self.flush()
        if self._file is not None:
            self._file.close()
