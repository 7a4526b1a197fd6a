"""The JSON envelope and error contract of the sample apps.

Every response body is a JSON object carrying three volatile fields that differ
from run to run and from server to server: ``generated_at`` (UTC timestamp),
``server`` (service name, host and pid) and ``request_id`` (echoed from the
``X-Request-Id`` request header, or generated). Errors are
``{"error": <code>, "message": ..., <details>}`` with a 4xx/5xx status; no
handler builds an error body by hand, they raise an ``ApiError`` subclass and
``envelope_middleware`` renders it. The extracted services reuse this module so
their responses have the same shape as the monolith's.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import uuid
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = [
    "REQUEST_ID_HEADER",
    "REQUEST_ID_KEY",
    "SERVER_NAME_KEY",
    "ApiError",
    "BadRequest",
    "Conflict",
    "NotFound",
    "Unprocessable",
    "default_server_name",
    "envelope_middleware",
    "json_response",
    "new_id",
    "read_json_object",
    "utc_now",
]

REQUEST_ID_HEADER = "X-Request-Id"
SERVER_NAME_KEY = web.AppKey("server_name", str)
REQUEST_ID_KEY = web.RequestKey("request_id", str)

_log = logging.getLogger(__name__)


def utc_now() -> str:
    """An ISO 8601 UTC timestamp with microseconds, e.g. ``2024-05-01T12:00:00.123456Z``."""
    now = datetime.datetime.now(datetime.UTC)
    return now.isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    """A random identifier such as ``ORD-3F2A9C01B7D4``: unique, and different every run."""
    return f"{prefix}-{uuid.uuid4().hex[:12].upper()}"


def default_server_name(service: str) -> str:
    return f"{service}@{socket.gethostname()}:{os.getpid()}"


class ApiError(Exception):
    """An error the client caused or must know about; rendered as a JSON error body."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.details}


class BadRequest(ApiError):
    status = 400
    code = "invalid_request"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class Unprocessable(ApiError):
    status = 422
    code = "unprocessable"


def json_response(request: web.Request, payload: dict[str, Any], status: int = 200) -> web.Response:
    """Wrap ``payload`` in the volatile envelope and serialise it."""
    body = {
        **payload,
        "generated_at": utc_now(),
        "server": request.app[SERVER_NAME_KEY],
        "request_id": request.get(REQUEST_ID_KEY, ""),
    }
    return web.json_response(body, status=status)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or ``BadRequest``."""
    raw = await request.read()
    if not raw:
        raise BadRequest("request body must be a JSON object")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("request body is not valid JSON", detail=str(exc)) from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


@web.middleware
async def envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Assign the request id, and turn every error into the JSON error contract."""
    request[REQUEST_ID_KEY] = request.headers.get(REQUEST_ID_HEADER) or new_id("REQ")
    try:
        response = await handler(request)
    except ApiError as exc:
        response = json_response(request, exc.body(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        response = json_response(request, {"error": code, "message": exc.reason}, exc.status)
    except Exception:
        _log.exception("unhandled error on %s %s", request.method, request.path)
        body = {"error": "internal_error", "message": "internal server error"}
        response = json_response(request, body, status=500)
    response.headers[REQUEST_ID_HEADER] = request[REQUEST_ID_KEY]
    response.headers["X-Served-By"] = request.app[SERVER_NAME_KEY]
    return response
