"""The baseline of the benchmark: the proxy most people would write first with aiohttp.

aiohttp.web with one catch-all handler and one shared ``ClientSession``; request and response
bodies stream through (no buffering), hop-by-hop headers are dropped. Paths under ``/stream/`` go
to the streaming backend, everything else to the fast backend. No routing table, no metrics, no
logging: this is the floor a proxy built on aiohttp's server and client pays per request.

Run: ``python bench/naive_proxy.py --port P --upstream http://127.0.0.1:B
--stream-upstream http://127.0.0.1:S [--uvloop]``.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
CHUNK = 256 * 1024


def build_app(upstream: str, stream_upstream: str) -> web.Application:
    session_key = web.AppKey("session", ClientSession)

    async def open_session(app: web.Application) -> None:
        app[session_key] = ClientSession(
            connector=TCPConnector(limit=0),
            timeout=ClientTimeout(total=None, sock_connect=5),
            auto_decompress=False,
        )

    async def close_session(app: web.Application) -> None:
        await app[session_key].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        base = stream_upstream if request.path.startswith("/stream/") else upstream
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = request.content.iter_chunked(CHUNK) if request.can_read_body else None
        async with app[session_key].request(
            request.method,
            base + request.raw_path,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as upstream_response:
            response = web.StreamResponse(status=upstream_response.status)
            for name, value in upstream_response.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            if upstream_response.content_length is not None:
                response.content_length = upstream_response.content_length
            await response.prepare(request)
            async for chunk in upstream_response.content.iter_chunked(CHUNK):
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application(client_max_size=0)
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="http://host:port of the fast backend")
    parser.add_argument("--stream-upstream", required=True, help="http://host:port for /stream/")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (default: asyncio)")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = build_app(args.upstream.rstrip("/"), args.stream_upstream.rstrip("/"))
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
