"""One client request as the data plane routes and forwards it.

A `RequestHead` is built once per request by the client connection, before routing: the route
table reads its facts (method, path, host, headers, cookies; the `routing.RequestFacts` protocol),
the route's split reads its headers and cookies, and the exchange and the shadow copy render the
upstream request head from it. It holds no I/O and no clock; after dispatch it is not changed.
"""

from __future__ import annotations

__all__ = ["RequestHead"]


class RequestHead:
    """One request as routed and forwarded: the route table's facts (method, path, host, headers,
    cookies) and what the proxy sends upstream, minus the upstream-specific host and path prefix.

    One object per request serves both (it was two): `raw` is the client's headers as parsed
    (names lower-cased), `headers` the end-to-end ones forwarded, `extra` the proxy's forwarding
    headers and request id (rendered lines, each ending in CRLF), `framing` the body framing line
    (empty for a bodiless request), `rewritten` the path as the extracted service sees it (the
    route's rewrite, set once routed).
    """

    __slots__ = (
        "_cookies",
        "extra",
        "framing",
        "headers",
        "host",
        "method",
        "method_b",
        "path",
        "query",
        "raw",
        "rewritten",
    )

    def __init__(
        self,
        method_b: bytes,
        method: str,
        path: str,
        query: bytes,
        host: str | None,
        raw: list[tuple[bytes, bytes]],
        headers: list[tuple[bytes, bytes]],
        extra: bytes,
        framing: bytes,
    ) -> None:
        self.method_b = method_b
        self.method = method
        self.path = path
        self.rewritten = path
        self.query = query
        self.host = host
        self.raw = raw
        self.headers = headers
        self.extra = extra
        self.framing = framing
        self._cookies: dict[str, str] | None = None

    def header(self, name: str) -> str | None:
        key = name.encode("latin-1")
        for n, v in self.raw:
            if n == key:
                return v.decode("latin-1")
        return None

    def cookie(self, name: str) -> str | None:
        if self._cookies is None:
            jar: dict[str, str] = {}
            for n, v in self.raw:
                if n == b"cookie":
                    for part in v.decode("latin-1").split(";"):
                        k, sep, val = part.strip().partition("=")
                        if sep and k not in jar:
                            jar[k] = val
            self._cookies = jar
        return self._cookies.get(name)
