"""The access log: one JSON line per request, queued in memory and written in batches.

Building a structlog event per request costs tens of microseconds; an access line here is a tuple
appended to a list, serialised and written every `flush_interval` (5 ms by default) in one write.
Lines are JSON, so a CR or LF in a path or header can never forge a second line. Credentials are
never logged: the line holds no header values at all except the request id.
"""

from __future__ import annotations

import asyncio
import sys
import time
from json.encoder import encode_basestring_ascii
from typing import IO

__all__ = ["AccessLog"]

_FIELDS = (
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
_KEYS = tuple(f',"{name}":' for name in _FIELDS)
_quote = encode_basestring_ascii
_COMMON_LEN = len(_FIELDS)


class AccessLog:
    """Queue of access lines flushed by a loop timer; `close()` flushes what is left."""

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
        self._own = path is not None
        self._stream: IO[str] = (
            open(path, "a", encoding="utf-8")  # noqa: SIM115  (closed by close())
            if path
            else (stream or sys.stdout)
        )
        self._interval = flush_interval
        self._queue: list[tuple[object, ...]] = []
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.max_queued = max_queued
        self.dropped = 0

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def log(self, *fields: object) -> None:
        """Queue one line; fields in the order of `_FIELDS`."""
        if not self.enabled:
            return
        queue = self._queue
        if len(queue) >= self.max_queued:
            self.dropped += 1
            return
        queue.append(fields)
        if self._handle is None and self._loop is not None:
            self._handle = self._loop.call_later(self._interval, self.flush)

    def flush(self) -> None:
        self._handle = None
        queue, self._queue = self._queue, []
        if not queue:
            return
        # Hand-built JSON (strings through the C string encoder): a dict and JSONEncoder per
        # line cost several times more. The line is the same object json.dumps would give.
        head = '{"event":"access","ts":' + repr(round(time.time(), 3))
        quote = _quote
        lines = []
        for fields in queue:
            if len(fields) == _COMMON_LEN:
                (rid, method, path, route, upstream, status, duration, size, client, fb, err) = (
                    fields
                )
            else:
                fb = ""  # not the common line: the general loop
            if (
                fb is None
                and err is None
                and type(rid) is str
                and type(method) is str
                and type(path) is str
                and type(route) is str
                and type(upstream) is str
                and type(client) is str
                and type(status) is int
                and type(duration) is float
                and type(size) is int
            ):
                # The common line (a proxied request without fallback or error), in one format:
                # the same text as the general loop below.
                lines.append(
                    f'{head},"request_id":{quote(rid)},"method":{quote(method)},'
                    f'"path":{quote(path)},"route":{quote(route)},"upstream":{quote(upstream)},'
                    f'"status":{status!r},"duration_ms":{duration!r},"bytes":{size!r},'
                    f'"client":{quote(client)}}}'
                )
                continue
            parts = [head]
            for key, value in zip(_KEYS, fields, strict=False):
                if value is None:
                    continue
                parts.append(key)
                parts.append(quote(value) if type(value) is str else repr(value))
            parts.append("}")
            lines.append("".join(parts))
        lines.append("")
        try:
            self._stream.write("\n".join(lines))
            self._stream.flush()
        except (OSError, ValueError):
            self.dropped += len(queue)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self.flush()
        if self._own:
            self._stream.close()
