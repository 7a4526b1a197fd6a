"""Shadow traffic end to end (issue 5): mirroring, comparison, counters and the mismatch API.

Real servers on loopback: the primary is an aiohttp app; the shadow is an aiohttp app or, for the
misbehaving cases (hang, reset), a RawUpstream. The client always talks to the proxy with aiohttp.
Shadow work finishes after the client's response, so assertions on its outcome poll (bounded).
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import struct
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from tests.harness import (
    ProxyHandle,
    RawUpstream,
    free_port,
    raw_exchange,
    render_config,
    start_app,
)

ProxyFactory = Callable[..., Awaitable[ProxyHandle]]
Responder = Callable[[web.Request, bytes], web.Response]
ROUTE = "orders"

# ---- backends ---------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path_qs: str
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class Backend:
    """An aiohttp upstream whose answer the test chooses; it records every request it gets."""

    respond: Responder
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    def app(self) -> web.Application:
        async def handler(request: web.Request) -> web.Response:
            body = await request.read()
            self.seen.append(
                Seen(request.method, request.path_qs, CIMultiDict(request.headers), body)
            )
            return self.respond(request, body)

        app = web.Application(client_max_size=1 << 24)
        app.router.add_route("*", "/{tail:.*}", handler)
        return app


@pytest.fixture
async def servers() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


async def serve(stack: AsyncExitStack, respond: Responder) -> Backend:
    backend = Backend(respond)
    runner, backend.port = await start_app(backend.app())
    stack.push_async_callback(runner.cleanup)
    return backend


async def serve_raw(stack: AsyncExitStack, behaviour: Any) -> RawUpstream:
    raw = await RawUpstream(behaviour).start()
    stack.push_async_callback(raw.stop)
    return raw


def json_answer(
    payload: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> Responder:
    def respond(request: web.Request, body: bytes) -> web.Response:
        return web.json_response(payload, status=status, headers=headers)

    return respond


async def hang_until_closed(up: RawUpstream, reader: asyncio.StreamReader, writer: Any) -> None:
    """Read the request and never answer; ends when the proxy gives up and closes."""
    await up.read_head(reader)
    await reader.read()


async def reset_connection(up: RawUpstream, reader: asyncio.StreamReader, writer: Any) -> None:
    """Read the request, then reset the connection (RST, not FIN)."""
    await up.read_head(reader)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# ---- proxy config and helpers -----------------------------------------------------------

PRIMARY_PAYLOAD = {"id": 7, "status": "paid", "total": 42}
PRIMARY_HEADERS = {"X-Primary": "yes", "Set-Cookie": "session=primary-secret; Path=/"}


def shadow_config(legacy: int, shadow: int, shadow_yaml: str = "", *, extra: str = "") -> str:
    """One shadowed route (`/api/orders`) plus an unshadowed one (`/api/plain`), same primary."""
    settings = "\n".join("      " + line for line in shadow_yaml.strip().splitlines() if line)
    return (
        render_config(
            """
        upstreams:
          legacy: {url: "http://127.0.0.1:{legacy}", role: legacy}
          orders: {url: "http://127.0.0.1:{shadow}", role: extracted}
        routes:
          - name: orders
            match: {path_prefix: /api/orders}
            upstream: legacy
            shadow:
              upstream: orders
        """,
            legacy=legacy,
            shadow=shadow,
        )
        + settings
        + "\n"
        + render_config(
            """
          - name: plain
            match: {path_prefix: /api/plain}
            upstream: legacy
        default: {upstream: legacy}
        """
        )
        + extra
    )


def shadow_count(handle: ProxyHandle, outcome: str, upstream: str = "orders") -> float:
    return handle.metric(
        "strangler_shadow_requests_total", route=ROUTE, upstream=upstream, outcome=outcome
    )


def comparisons(handle: ProxyHandle, result: str) -> float:
    return handle.metric("strangler_shadow_comparisons_total", route=ROUTE, result=result)


def compared(handle: ProxyHandle) -> float:
    return comparisons(handle, "match") + comparisons(handle, "mismatch")


def outcomes(handle: ProxyHandle) -> dict[str, float]:
    counts = {o: shadow_count(handle, o) for o in ("sent", "failed", "dropped", "skipped")}
    counts.update({r: comparisons(handle, r) for r in ("match", "mismatch")})
    return counts


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    """Poll `check` until it holds (shadow work ends after the client's response)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            return  # the caller's assertion reports what was observed
        await asyncio.sleep(0.01)


async def settle(handle: ProxyHandle, within: float = 5.0) -> None:
    """Wait until no shadow request is outstanding on the proxy."""
    await eventually(lambda: handle.proxy.shadow_in_flight() == 0, within)


async def get(
    session: aiohttp.ClientSession, url: str, **kwargs: Any
) -> tuple[int, CIMultiDict[str], bytes]:
    async with session.get(url, **kwargs) as resp:
        return resp.status, CIMultiDict(resp.headers), await resp.read()


async def mismatch_api(handle: ProxyHandle) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(handle.admin_url("/admin/shadow/mismatches")) as resp,
    ):
        assert resp.status == 200
        data: dict[str, Any] = await resp.json()
        return data


# ---- every kind of shadow: the client always gets the primary's exact answer ------------


@dataclass(frozen=True)
class OutcomeCase:
    id: str
    start_shadow: Callable[[AsyncExitStack], Awaitable[int]]
    expected: dict[str, float]


async def _identical(stack: AsyncExitStack) -> int:
    return (await serve(stack, json_answer(PRIMARY_PAYLOAD))).port


async def _one_field_differs(stack: AsyncExitStack) -> int:
    payload = {**PRIMARY_PAYLOAD, "total": 43}
    return (await serve(stack, json_answer(payload, headers={"X-Shadow": "yes"}))).port


async def _server_error(stack: AsyncExitStack) -> int:
    return (await serve(stack, json_answer({"error": "boom"}, status=500))).port


async def _hangs(stack: AsyncExitStack) -> int:
    return (await serve_raw(stack, hang_until_closed)).port


async def _resets(stack: AsyncExitStack) -> int:
    return (await serve_raw(stack, reset_connection)).port


def _counts(
    sent: float, failed: float = 0, match: float = 0, mismatch: float = 0
) -> dict[str, float]:
    return {
        "sent": sent,
        "failed": failed,
        "dropped": 0,
        "skipped": 0,
        "match": match,
        "mismatch": mismatch,
    }


OUTCOME_CASES = [
    OutcomeCase("identical_shadow_matches", _identical, _counts(3, match=3)),
    OutcomeCase("one_field_differs_mismatch", _one_field_differs, _counts(3, mismatch=3)),
    OutcomeCase("shadow_500_mismatch", _server_error, _counts(3, mismatch=3)),
    OutcomeCase("shadow_hangs_times_out", _hangs, _counts(3, failed=3)),
    OutcomeCase("shadow_resets_connection", _resets, _counts(3, failed=3)),
]


@pytest.mark.parametrize("case", OUTCOME_CASES, ids=[c.id for c in OUTCOME_CASES])
async def test_client_gets_primary_answer_whatever_the_shadow_does(
    proxy_factory: ProxyFactory, servers: AsyncExitStack, case: OutcomeCase
) -> None:
    primary = await serve(servers, json_answer(PRIMARY_PAYLOAD, headers=PRIMARY_HEADERS))
    shadow_port = await case.start_shadow(servers)
    handle = await proxy_factory(shadow_config(primary.port, shadow_port, "timeout: 300ms"))

    async with aiohttp.ClientSession() as session:
        direct = await get(session, f"http://127.0.0.1:{primary.port}/api/orders/7")
        for _ in range(3):
            status, headers, body = await get(session, handle.url("/api/orders/7"))
            assert (status, body) == (direct[0], direct[2])
            assert headers["X-Primary"] == "yes"
            assert headers["Content-Type"] == direct[1]["Content-Type"]
            assert "X-Shadow" not in headers

    expected = case.expected
    await eventually(lambda: outcomes(handle) == expected)
    assert outcomes(handle) == expected
    assert len(primary.seen) == 4  # three through the proxy, one direct: never replayed


async def test_mismatch_record_shows_request_statuses_differences_and_redacts_secrets(
    proxy_factory: ProxyFactory, servers: AsyncExitStack
) -> None:
    padding = "p" * 5000  # longer than the preview: the stored bodies are cut
    primary = await serve(
        servers, json_answer({**PRIMARY_PAYLOAD, "padding": padding}, headers=PRIMARY_HEADERS)
    )
    shadow = await serve(
        servers,
        json_answer(
            {**PRIMARY_PAYLOAD, "total": 43, "padding": padding},
            headers={"Set-Cookie": "session=shadow-secret"},
        ),
    )
    handle = await proxy_factory(shadow_config(primary.port, shadow.port))

    async with aiohttp.ClientSession() as session:
        await get(
            session,
            handle.url("/api/orders/7?expand=items"),
            headers={"Authorization": "Bearer client-secret", "Cookie": "sid=cookie-secret"},
        )
    await eventually(lambda: comparisons(handle, "mismatch") == 1)
    assert comparisons(handle, "mismatch") == 1

    data = await mismatch_api(handle)
    (record,) = data["mismatches"]
    assert (record["route"], record["method"], record["path"], record["query"]) == (
        ROUTE,
        "GET",
        "/api/orders/7",
        "expand=items",
    )
    assert (record["primary_status"], record["shadow_status"]) == (200, 200)
    assert record["differences"] == [
        {"field": "$.total", "primary": 42, "shadow": 43, "kind": "changed"}
    ]
    for preview in (record["primary_body_preview"], record["shadow_body_preview"]):
        assert preview.startswith('{"id": 7')
        assert 0 < len(preview) < len(padding)
    request_headers = {name.lower(): value for name, value in record["request_headers"]}
    assert request_headers["authorization"] == "[redacted]"
    assert request_headers["cookie"] == "[redacted]"
    for side in ("primary_headers", "shadow_headers"):
        side_headers = {name.lower(): value for name, value in record[side]}
        assert side_headers["set-cookie"] == "[redacted]"
    text = json.dumps(data)
    for secret in ("client-secret", "cookie-secret", "primary-secret", "shadow-secret"):
        assert secret not in text
    assert data["field_counts"][ROUTE] == {"$.total": 1}


async def test_hanging_shadow_does_not_slow_the_primary(
    proxy_factory: ProxyFactory, servers: AsyncExitStack
) -> None:
    primary = await serve(servers, json_answer(PRIMARY_PAYLOAD))
    shadow = await serve_raw(servers, hang_until_closed)
    handle = await proxy_factory(shadow_config(primary.port, shadow.port, "timeout: 2s"))
    loop = asyncio.get_running_loop()

    async def latencies(path: str) -> list[float]:
        out = []
        async with aiohttp.ClientSession() as session:
            for _ in range(5):
                started = loop.time()
                status, _, body = await get(session, handle.url(path))
                out.append(loop.time() - started)
                assert status == 200 and json.loads(body) == PRIMARY_PAYLOAD
        return out

    without_shadow = await latencies("/api/plain/7")
    with_shadow = await latencies("/api/orders/7")
    # Generous slack: the primary must not wait anywhere near the shadow's 2 s timeout.
    assert max(with_shadow) < 1.0
    assert statistics.median(with_shadow) < statistics.median(without_shadow) + 0.5
    assert handle.proxy.shadow_in_flight() == 5  # all still hanging: the primary did not wait

    await eventually(lambda: shadow_count(handle, "failed") == 5, within=6.0)
    assert outcomes(handle) == _counts(5, failed=5)


# ---- which requests are mirrored ----------------------------------------------------------


@dataclass(frozen=True)
class BodyCase:
    id: str
    shadow_yaml: str
    body: bytes
    chunked: bool
    mirrored: bool


BODY = bytes(range(256)) + b"exact body \x00\xff"
OPT_IN = """
methods: [GET, POST]
allow_unsafe_methods: true
max_body_bytes: 1KiB
"""
BODY_CASES = [
    BodyCase("post_not_mirrored_by_default", "", BODY, False, False),
    BodyCase("post_mirrored_when_opted_in", OPT_IN, BODY, False, True),
    BodyCase("chunked_post_mirrored_when_opted_in", OPT_IN, BODY, True, True),
    BodyCase("body_over_cap_skipped", OPT_IN, b"x" * 5000, False, False),
    BodyCase("chunked_body_over_cap_skipped", OPT_IN, b"x" * 5000, True, False),
]


@pytest.mark.parametrize("case", BODY_CASES, ids=[c.id for c in BODY_CASES])
async def test_post_mirroring_needs_opt_in_and_respects_body_cap(
    proxy_factory: ProxyFactory, servers: AsyncExitStack, case: BodyCase
) -> None:
    primary = await serve(servers, json_answer({"created": True}))
    shadow = await serve(servers, json_answer({"created": True}))
    handle = await proxy_factory(shadow_config(primary.port, shadow.port, case.shadow_yaml))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(case.body), 100):
            yield case.body[start : start + 100]

    data: Any = chunks() if case.chunked else case.body
    async with (
        aiohttp.ClientSession() as session,
        session.post(handle.url("/api/orders?src=test"), data=data) as resp,
    ):
        assert resp.status == 200
        assert await resp.json() == {"created": True}
    assert primary.seen[0].body == case.body

    if case.mirrored:
        await eventually(lambda: comparisons(handle, "match") == 1)
        (copy,) = shadow.seen
        assert (copy.method, copy.path_qs, copy.body) == ("POST", "/api/orders?src=test", case.body)
        assert copy.headers["X-Strangler-Shadow"] == "1"
        assert outcomes(handle) == _counts(1, match=1)
    else:
        await settle(handle)
        assert shadow.seen == []
        assert outcomes(handle) == {**_counts(0), "skipped": 1}


async def test_in_flight_cap_drops_extra_shadow_requests(
    proxy_factory: ProxyFactory, servers: AsyncExitStack
) -> None:
    primary = await serve(servers, json_answer(PRIMARY_PAYLOAD))
    shadow = await serve_raw(servers, hang_until_closed)
    handle = await proxy_factory(
        shadow_config(primary.port, shadow.port, "max_in_flight: 2\ntimeout: 1s")
    )

    async with aiohttp.ClientSession() as session:
        answers = await asyncio.gather(
            *(get(session, handle.url(f"/api/orders/{n}")) for n in range(6))
        )
    assert [(status, json.loads(body)) for status, _, body in answers] == [
        (200, PRIMARY_PAYLOAD)
    ] * 6
    assert (shadow_count(handle, "sent"), shadow_count(handle, "dropped")) == (2, 4)
    await eventually(lambda: shadow_count(handle, "failed") == 2)
    assert outcomes(handle) == {**_counts(2, failed=2), "dropped": 4}
    assert handle.proxy.shadow_in_flight() == 0


async def test_in_flight_count_survives_a_reload_without_leaking(
    proxy_factory: ProxyFactory, servers: AsyncExitStack
) -> None:
    primary = await serve(servers, json_answer(PRIMARY_PAYLOAD))
    shadow = await serve_raw(servers, hang_until_closed)
    handle = await proxy_factory(
        shadow_config(primary.port, shadow.port, "max_in_flight: 2\ntimeout: 500ms")
    )
    async with aiohttp.ClientSession() as session:
        for n in range(2):
            await get(session, handle.url(f"/api/orders/{n}"))
        assert handle.proxy.shadow_in_flight() == 2
        handle.config_path.write_text(
            handle.config_path.read_text().replace("timeout: 500ms", "timeout: 400ms")
        )
        result = await handle.proxy.reload()
        assert result.ok and result.changed, result
        assert handle.proxy.shadow_in_flight() == 2  # the cap still counts the old copies
        await get(session, handle.url("/api/orders/2"))
        assert shadow_count(handle, "dropped") == 1

        await eventually(lambda: shadow_count(handle, "failed") == 2)
        assert handle.proxy.shadow_in_flight() == 0
        for n in range(3, 5):
            await get(session, handle.url(f"/api/orders/{n}"))
    assert (shadow_count(handle, "sent"), shadow_count(handle, "dropped")) == (4, 1)
    await eventually(lambda: shadow_count(handle, "failed") == 4)
    assert handle.proxy.shadow_in_flight() == 0


async def test_shadow_copies_are_marked_and_a_marked_request_is_not_mirrored(
    proxy_factory: ProxyFactory, servers: AsyncExitStack
) -> None:
    primary = await serve(servers, json_answer(PRIMARY_PAYLOAD))
    shadow = await serve(servers, json_answer(PRIMARY_PAYLOAD))
    handle = await proxy_factory(shadow_config(primary.port, shadow.port))

    async with aiohttp.ClientSession() as session:
        await get(session, handle.url("/api/orders/1"), headers={"X-Strangler-Shadow": "1"})
        await get(session, handle.url("/api/orders/2"))
    await eventually(lambda: comparisons(handle, "match") == 1)
    assert outcomes(handle) == _counts(1, match=1)
    (copy,) = shadow.seen
    assert copy.path_qs == "/api/orders/2"
    assert copy.headers["X-Strangler-Shadow"] == "1"
    # The client's marker is an internal header: it is not forwarded to the primary either.
    assert "X-Strangler-Shadow" not in primary.seen[0].headers


@pytest.mark.parametrize(
    "marked",
    [(False, True, False), (False, False, True)],
    ids=["middle_of_three_marked", "last_of_three_marked"],
)
async def test_loop_guard_reads_each_pipelined_request_own_headers(
    proxy_factory: ProxyFactory, servers: AsyncExitStack, marked: tuple[bool, ...]
) -> None:
    primary = await serve(servers, json_answer(PRIMARY_PAYLOAD))
    shadow = await serve(servers, json_answer(PRIMARY_PAYLOAD))
    handle = await proxy_factory(shadow_config(primary.port, shadow.port))
    requests = b"".join(
        b"GET /api/orders/%d HTTP/1.1\r\nHost: shop\r\n%s\r\n"
        % (n, b"X-Strangler-Shadow: 1\r\n" if mark else b"")
        for n, mark in enumerate(marked)
    )
    raw = await raw_exchange(
        handle.port,
        requests + b"GET /api/plain HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n",
    )
    assert raw.count(b"HTTP/1.1 200 ") == len(marked) + 1
    expected = [f"/api/orders/{n}" for n, mark in enumerate(marked) if not mark]
    await eventually(lambda: comparisons(handle, "match") == len(expected))
    await settle(handle)
    assert outcomes(handle) == _counts(len(expected), match=len(expected))
    assert sorted(s.path_qs for s in shadow.seen) == expected


async def test_shadow_pointing_back_at_the_proxy_is_mirrored_only_once(
    proxy_factory: ProxyFactory, servers: AsyncExitStack
) -> None:
    primary = await serve(servers, json_answer(PRIMARY_PAYLOAD))
    listen = free_port()
    config = f"listen: {{host: 127.0.0.1, port: {listen}}}\n" + shadow_config(primary.port, listen)
    handle = await proxy_factory(config)

    async with aiohttp.ClientSession() as session:
        status, _, body = await get(session, handle.url("/api/orders/7"))
    assert status == 200 and json.loads(body) == PRIMARY_PAYLOAD
    await eventually(lambda: comparisons(handle, "match") == 1)
    await asyncio.sleep(0.2)  # room for a loop to show itself
    assert outcomes(handle) == _counts(1, match=1)
    assert len(primary.seen) == 2  # the client's request and the one mirrored copy


async def test_percent_samples_about_that_share(
    proxy_factory: ProxyFactory, servers: AsyncExitStack
) -> None:
    primary = await serve(servers, json_answer(PRIMARY_PAYLOAD))
    shadow = await serve(servers, json_answer(PRIMARY_PAYLOAD))
    handle = await proxy_factory(shadow_config(primary.port, shadow.port, "percent: 50"))
    total = 400

    async with aiohttp.ClientSession() as session:
        for start in range(0, total, 20):
            await asyncio.gather(
                *(get(session, handle.url(f"/api/orders/{n}")) for n in range(start, start + 20))
            )
    await settle(handle)
    sent = shadow_count(handle, "sent")
    # Binomial(400, 0.5): standard deviation 10; five of them either side.
    assert 150 <= sent <= 250
    await eventually(lambda: len(shadow.seen) == sent)
    assert len(shadow.seen) == sent == comparisons(handle, "match")
    assert len(primary.seen) == total


# ---- comparison rules: ignore rules and learned noise -------------------------------------


def volatile(request: web.Request, body: bytes) -> web.Response:
    payload = {"id": 7, "generated_at": uuid.uuid4().hex}
    return web.json_response(payload, headers={"X-Build": uuid.uuid4().hex})


@dataclass(frozen=True)
class IgnoreCase:
    id: str
    compare_yaml: str
    mismatched_fields: set[str]


IGNORE_CASES = [
    IgnoreCase(
        "nothing_ignored", "headers: [content-type, x-build]", {"$.generated_at", "header:x-build"}
    ),
    IgnoreCase(
        "path_ignored",
        "headers: [content-type, x-build]\nignore_paths: [$.generated_at]",
        {"header:x-build"},
    ),
    IgnoreCase(
        "path_and_header_ignored",
        "headers: [content-type, x-build]\nignore_paths: [$.generated_at]\n"
        "ignore_headers: [x-build]",
        set(),
    ),
]


@pytest.mark.parametrize("case", IGNORE_CASES, ids=[c.id for c in IGNORE_CASES])
async def test_ignore_rules_make_volatile_fields_match(
    proxy_factory: ProxyFactory, servers: AsyncExitStack, case: IgnoreCase
) -> None:
    primary = await serve(servers, volatile)
    shadow = await serve(servers, volatile)
    compare_yaml = "compare:\n" + "\n".join("  " + line for line in case.compare_yaml.splitlines())
    handle = await proxy_factory(shadow_config(primary.port, shadow.port, compare_yaml))

    async with aiohttp.ClientSession() as session:
        await get(session, handle.url("/api/orders/7"))
    await eventually(lambda: compared(handle) == 1)
    if not case.mismatched_fields:
        assert outcomes(handle) == _counts(1, match=1)
        return
    assert outcomes(handle) == _counts(1, mismatch=1)
    (record,) = (await mismatch_api(handle))["mismatches"]
    assert {d["field"] for d in record["differences"]} == case.mismatched_fields


def with_token(request: web.Request, body: bytes) -> web.Response:
    return web.json_response({"id": 7, "status": "paid", "request_token": uuid.uuid4().hex})


@pytest.mark.parametrize("noise_percent", [0, 100], ids=["no_noise_detection", "noise_100"])
async def test_noise_detection_learns_a_random_field(
    proxy_factory: ProxyFactory, servers: AsyncExitStack, noise_percent: int
) -> None:
    primary = await serve(servers, with_token)
    shadow = await serve(servers, with_token)
    handle = await proxy_factory(
        shadow_config(primary.port, shadow.port, f"noise_percent: {noise_percent}")
    )

    async with aiohttp.ClientSession() as session:
        for n in range(1, 6):
            await get(session, handle.url("/api/orders/7"))
            await eventually(lambda: compared(handle) == n)  # noqa: B023 (awaited here)
    data = await mismatch_api(handle)
    if noise_percent == 0:
        assert outcomes(handle) == _counts(5, mismatch=5)
        assert data["noisy_fields"].get(ROUTE, []) == []
        assert len(primary.seen) == 5
        return
    assert outcomes(handle) == _counts(5, match=5)
    assert data["noisy_fields"][ROUTE] == ["$.request_token"]
    assert data["mismatches"] == []
    assert len(primary.seen) == 10  # each mirrored request also went a second time to the primary
    assert sum(s.headers.get("X-Strangler-Shadow") == "1" for s in primary.seen) == 5


async def test_mismatches_go_to_the_configured_jsonl_file_and_the_ring_is_bounded(
    proxy_factory: ProxyFactory, servers: AsyncExitStack, tmp_path: Path
) -> None:
    primary = await serve(servers, json_answer(PRIMARY_PAYLOAD))
    shadow = await serve(servers, json_answer({**PRIMARY_PAYLOAD, "total": 43}))
    log = tmp_path / "mismatches.jsonl"
    handle = await proxy_factory(
        shadow_config(
            primary.port,
            shadow.port,
            extra=f"mismatches: {{keep: 1, preview_bytes: 8, jsonl_path: {log}}}\n",
        )
    )

    async with aiohttp.ClientSession() as session:
        for n in range(2):
            await get(session, handle.url(f"/api/orders/{n}"), headers={"Authorization": "x"})
    await eventually(lambda: comparisons(handle, "mismatch") == 2)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["path"], r["differences"][0]["field"]) for r in lines] == [
        ("/api/orders/0", "$.total"),
        ("/api/orders/1", "$.total"),
    ]
    assert all(
        dict(map(tuple, r["request_headers"]))["authorization"] == "[redacted]" for r in lines
    )
    # The admin API keeps only the newest one, with an 8-byte preview.
    (record,) = (await mismatch_api(handle))["mismatches"]
    assert record["path"] == "/api/orders/1"
    assert len(record["shadow_body_preview"].encode()) <= 8


async def test_in_flight_cap_counts_requests_whose_body_is_still_arriving(
    proxy_factory: ProxyFactory, servers: AsyncExitStack
) -> None:
    """Slow request bodies hold their shadow slot from the start, so the cap cannot be passed."""
    primary = await serve(servers, json_answer(PRIMARY_PAYLOAD))
    shadow = await serve(servers, json_answer(PRIMARY_PAYLOAD))
    handle = await proxy_factory(
        shadow_config(primary.port, shadow.port, OPT_IN + "max_in_flight: 2\ntimeout: 1s")
    )
    streams = []
    for n in range(4):
        reader, writer = await asyncio.open_connection("127.0.0.1", handle.port)
        writer.write(
            f"POST /api/orders/{n} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab".encode()
        )
        await writer.drain()
        streams.append((reader, writer))
    await asyncio.sleep(0.2)  # every head is in, no body is complete
    assert handle.proxy.shadow_in_flight() == 2
    assert shadow_count(handle, "dropped") == 2
    for reader, writer in streams:
        writer.write(b"cd")
        await writer.drain()
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        writer.close()
    await settle(handle)
    assert (shadow_count(handle, "sent"), shadow_count(handle, "dropped")) == (2, 2)
    assert comparisons(handle, "match") == 2
