"""The streaming backend of the benchmark: discards uploads and streams downloads of any size.

``POST /stream/upload`` reads the request body to its end without keeping it and answers
``{"received": N}``; ``GET /stream/download/N`` answers N zero bytes with a Content-Length, written
in 1 MiB chunks under flow control. Raw asyncio and httptools (no framework) on uvloop, so the
backend costs as little CPU as possible and the proxy in front of it is what gets measured.

Run: ``python bench/stream_backend.py --port P``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from http import HTTPStatus
from typing import cast

import httptools
import uvloop

CHUNK = b"\0" * (1 << 20)


class StreamBackend(asyncio.Protocol):
    """One connection: keep-alive, one request at a time (the benchmark never pipelines)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.received = 0
        self.content_length: int | None = None
        self.in_body = False
        self.discard_left = 0  # body bytes still to skip without parsing
        self.can_write = asyncio.Event()
        self.can_write.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio subclass

    def data_received(self, data: bytes) -> None:
        if self.discard_left:
            # A Content-Length body: counted here, without a parser callback per chunk.
            taken = min(len(data), self.discard_left)
            self.discard_left -= taken
            self.received += taken
            if self.discard_left:
                return
            self.parser = httptools.HttpRequestParser(self)
            self.on_message_complete()
            data = data[taken:]
            if not data:
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._answer(400, b'{"error": "bad request"}', close=True)
            return
        if self.in_body and self.content_length is not None:
            self.discard_left = self.content_length - self.received
            self.in_body = False

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def on_message_begin(self) -> None:
        self.url = b""
        self.received = 0
        self.content_length = None
        self.in_body = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-length":
            self.content_length = int(value)

    def on_headers_complete(self) -> None:
        self.in_body = True

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.received += len(body)

    def on_message_complete(self) -> None:
        self.in_body = False
        path = httptools.parse_url(self.url).path.decode()
        if path.startswith("/stream/download/"):
            size = int(path.rsplit("/", 1)[1])
            asyncio.get_running_loop().create_task(self._download(size))
        elif path == "/stream/upload":
            self._answer(200, json.dumps({"received": self.received}).encode())
        else:
            self._answer(404, b'{"error": "not found"}')

    def _answer(self, status: int, body: bytes, close: bool = False) -> None:
        assert self.transport is not None
        connection = "Connection: close\r\n" if close else ""
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{connection}\r\n"
        )
        self.transport.write(head.encode() + body)
        if close:
            self.transport.close()

    async def _download(self, size: int) -> None:
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % size
        )
        view = memoryview(CHUNK)
        while size > 0 and not self.transport.is_closing():
            await self.can_write.wait()
            piece = min(size, len(CHUNK))
            self.transport.write(view[:piece])
            size -= piece


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(
            StreamBackend, args.host, args.port, backlog=1024
        )
        async with server:
            await server.serve_forever()

    uvloop.run(serve())


if __name__ == "__main__":
    main()
