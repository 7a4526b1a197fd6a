"""The admin listener (aiohttp): health, metrics, status page and the admin API.

Read-only endpoints are open on the admin listener (which binds to loopback by default); mutating
endpoints (`POST /admin/reload`) need `Authorization: Bearer <token>` when a token is configured
through the environment. A wrong or missing token gets 401 and is logged without the token.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import asdict
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from strangler import __version__, build
from strangler.shadow import mismatch_json

if TYPE_CHECKING:
    from strangler.app import Proxy

__all__ = ["build_admin_app"]

PROXY_KEY = web.AppKey("proxy", object)


def _proxy(request: web.Request) -> Proxy:
    return request.app[PROXY_KEY]  # type: ignore[return-value]


def _authorised(request: web.Request) -> bool:
    proxy = _proxy(request)
    token = proxy.admin_token
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    ok = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    if not ok:
        proxy.logger.warning(
            "strangler.admin.unauthorised",
            path=request.path,
            remote=request.remote,
            reason="missing" if not header else "wrong",
        )
    return ok


async def live(request: web.Request) -> web.Response:
    return web.json_response({"status": "live"})


async def ready(request: web.Request) -> web.Response:
    proxy = _proxy(request)
    if proxy.ready and not proxy.stopping:
        return web.json_response({"status": "ready", "version": proxy.config.version})
    return web.json_response({"status": "not_ready"}, status=503)


async def metrics(request: web.Request) -> web.Response:
    proxy = _proxy(request)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # `serve --workers N`: aggregate every worker's values (see strangler.workers). This
        # registry has no flushing collector, so this worker's batched counts go out first.
        proxy.metrics.flush()
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(proxy.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _jsonable(value: Any) -> Any:
    if isinstance(value, (frozenset, set, tuple, list)):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "pattern"):
        return value.pattern
    if hasattr(value, "value") and type(value).__module__.startswith("strangler"):
        return value.value
    return value


async def config(request: web.Request) -> web.Response:
    proxy = _proxy(request)
    cfg = proxy.config
    data = {
        "version": cfg.version,
        "path": str(proxy.path),
        "loaded_at": proxy.snapshot.loaded_at if proxy.snapshot else None,
        "last_error": proxy.last_error,
        "config": _jsonable({k: v for k, v in asdict(cfg).items() if k != "source"}),
    }
    return web.json_response(data, dumps=_dumps)


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, default=str)


def _overall(proxy: Proxy, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    stages: dict[str, int] = {}
    for item in summaries:
        stages[item["stage"]] = stages.get(item["stage"], 0) + 1
    total = len(summaries) or 1
    extracted = sum(
        r["requests_window"] * (r["observed_extracted_share"] or 0) / 100 for r in summaries
    )
    requests = sum(r["requests_window"] for r in summaries)
    return {
        "observed_extracted_share": round(100 * extracted / requests, 2) if requests else None,
        "stage_share": {k: round(100 * v / total, 2) for k, v in sorted(stages.items())},
        "last_error": proxy.last_error,
    }


async def routes(request: web.Request) -> web.Response:
    proxy = _proxy(request)
    summaries = proxy.route_summaries()
    return web.json_response(
        {
            "version": proxy.config.version,
            "routes": summaries,
            "overall": _overall(proxy, summaries),
        },
        dumps=_dumps,
    )


# Per-route counters the status page shows: sample name -> the count key a sample adds to.
_ROUTE_COUNTS: dict[str, Callable[[dict[str, str]], tuple[str, ...]]] = {
    "strangler_requests_total": lambda lb: (
        "requests",
        *(("errors_5xx",) if lb.get("code", "").startswith("5") else ()),
        *(("extracted_requests",) if lb.get("role") == "extracted" else ()),
    ),
    "strangler_fallbacks_total": lambda lb: ("fallbacks",),
    "strangler_upstream_errors_total": lambda lb: ("upstream_errors",),
    "strangler_retries_total": lambda lb: ("retries",),
    "strangler_shadow_requests_total": lambda lb: (f"shadow_{lb.get('outcome')}",),
    "strangler_shadow_comparisons_total": lambda lb: (f"shadow_{lb.get('result')}",),
}
_COUNT_KEYS = (
    "requests",
    "errors_5xx",
    "extracted_requests",
    "fallbacks",
    "upstream_errors",
    "retries",
    "shadow_sent",
    "shadow_dropped",
    "shadow_skipped",
    "shadow_failed",
    "shadow_match",
    "shadow_mismatch",
)


def _route_counts(proxy: Proxy) -> dict[str, dict[str, float]]:
    """Cumulative counters per route, summed over the other labels, from the registry."""
    counts: dict[str, dict[str, float]] = {}
    for family in proxy.metrics.registry.collect():
        for sample in family.samples:
            keys_of = _ROUTE_COUNTS.get(sample.name)
            route = sample.labels.get("route")
            if keys_of is None or route is None:
                continue
            row = counts.setdefault(route, dict.fromkeys(_COUNT_KEYS, 0.0))
            for key in keys_of(sample.labels):
                row[key] = row.get(key, 0.0) + sample.value
    return counts


async def status(request: web.Request) -> web.Response:
    """Everything the status page shows but the mismatches, in one poll."""
    proxy = _proxy(request)
    summaries = proxy.route_summaries()
    counts = _route_counts(proxy)
    for item in summaries:
        item["counts"] = counts.get(item["name"], dict.fromkeys(_COUNT_KEYS, 0.0))
    history = proxy.reload_history
    return web.json_response(
        {
            "version": proxy.config.version,
            "loaded_at": proxy.snapshot.loaded_at if proxy.snapshot else None,
            "last_reload": history[-1] if history else None,
            "ready": proxy.ready and not proxy.stopping,
            "routes": summaries,
            "overall": _overall(proxy, summaries),
        },
        dumps=_dumps,
    )


async def breakers(request: web.Request) -> web.Response:
    proxy = _proxy(request)
    out = []
    if proxy.snapshot is not None:
        for rt in proxy.snapshot.routes.values():
            for upstream, breaker in rt.breakers.items():
                out.append({"route": rt.name, "upstream": upstream, **breaker.snapshot()})
    return web.json_response({"breakers": out}, dumps=_dumps)


async def mismatches(request: web.Request) -> web.Response:
    proxy = _proxy(request)
    route = request.query.get("route")
    try:
        limit = max(1, min(int(request.query.get("limit", "50")), 500))
    except ValueError:
        raise web.HTTPBadRequest(text="limit must be an integer") from None
    store = proxy.shadow.store
    noise = {name: model.noisy_fields() for name, model in proxy.shadow.noise.items()}
    field_counts = {}
    if proxy.snapshot is not None:
        field_counts = {name: store.field_counts(name) for name in proxy.snapshot.routes}
    return web.json_response(
        {
            "mismatches": mismatch_json(proxy.shadow, route, limit),
            "field_counts": {k: v for k, v in field_counts.items() if v},
            "noisy_fields": noise,
        },
        dumps=_dumps,
    )


async def progress(request: web.Request) -> web.Response:
    proxy = _proxy(request)
    top = 20
    out = []
    if proxy.snapshot is not None:
        for rt in proxy.snapshot.routes.values():
            out.append(
                {
                    "route": rt.name,
                    "stage": rt.stage.value,
                    "observed_extracted_share": rt.progress.extracted_share(),
                    "legacy_paths": [
                        {"template": t, "requests": n} for t, n in rt.progress.legacy_templates(top)
                    ],
                }
            )
    return web.json_response({"routes": out}, dumps=_dumps)


async def reload(request: web.Request) -> web.Response:
    if not _authorised(request):
        return web.json_response(
            {"error": "unauthorised"}, status=401, headers={"WWW-Authenticate": "Bearer"}
        )
    proxy = _proxy(request)
    result = await proxy.reload("api")
    return web.json_response(asdict(result), status=200 if result.ok else 422, dumps=_dumps)


async def status_page(request: web.Request) -> web.Response:
    html = resources.files("strangler").joinpath("static/status.html").read_text(encoding="utf-8")
    return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})


async def info(request: web.Request) -> web.Response:
    return web.json_response({"name": "strangler", "version": __version__, "build": build()})


def build_admin_app(proxy: Proxy) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[PROXY_KEY] = proxy
    app.router.add_get("/", info)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status_page)
    app.router.add_get("/admin/config", config)
    app.router.add_get("/admin/routes", routes)
    app.router.add_get("/admin/status", status)
    app.router.add_get("/admin/breakers", breakers)
    app.router.add_get("/admin/shadow/mismatches", mismatches)
    app.router.add_get("/admin/progress", progress)
    app.router.add_post("/admin/reload", reload)
    return app
