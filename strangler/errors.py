"""The small JSON error responses the proxy itself generates (502, 503, 504, 4xx at the edge).

Invariant: an error never echoes the request (no path, header or body of it): only the status,
an error code, the route name, a failure kind and the request id.
"""

from __future__ import annotations

import json

from strangler.headers import render_response_head

__all__ = ["error_response"]


def error_response(
    status: int,
    error: str,
    *,
    request_id: bytes,
    route: str | None = None,
    kind: str | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
    close: bool = False,
) -> bytes:
    """A small JSON error the proxy itself generates; it never echoes the request."""
    payload: dict[str, object] = {"error": error, "status": status}
    if route is not None:
        payload["route"] = route
    if kind is not None:
        payload["kind"] = kind
    payload["request_id"] = request_id.decode("ascii", "replace")
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"x-request-id", request_id),
        *(extra or ()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    framing = b"content-length: " + str(len(body)).encode() + b"\r\n"
    return render_response_head(status, headers, framing) + body
