"""Wiring: load the config, start the proxy and admin listeners, reload, and shut down gracefully.

`Proxy` owns one process's proxy. `reload()` is all or nothing: it parses and validates the file,
builds a whole new snapshot beside the current one and swaps one reference; a failure leaves the
last good config serving, counted and shown by the admin API. An unchanged file rebuilds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import importlib.util
import ipaddress
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from strangler import build
from strangler.accesslog import AccessLog
from strangler.breaker import BreakerState
from strangler.config import Config
from strangler.loader import ConfigError, load_config
from strangler.logs import get_logger
from strangler.metrics import Metrics
from strangler.mismatches import MismatchStore
from strangler.runtime import (
    DataPlane,
    Snapshot,
    build_snapshot,
    extracted_weight,
    retire_snapshot,
)
from strangler.server import ClientConnection
from strangler.shadow import ShadowHub

__all__ = ["Proxy", "ReloadResult", "StartupError", "audit_changes"]


class StartupError(Exception):
    """The proxy refuses to start (unsafe admin binding, missing C parser, port in use)."""


@dataclass
class ReloadResult:
    ok: bool
    changed: bool
    version: str
    errors: list[str] = field(default_factory=list)
    changes: dict[str, Any] = field(default_factory=dict)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def audit_changes(old: Config | None, new: Config) -> dict[str, Any]:
    """What a reload changed, for the audit log: routes added, removed, stage and weight changes."""
    old_routes = {r.name: r for r in old.routes} if old else {}
    new_routes = {r.name: r for r in new.routes}
    changes: dict[str, Any] = {
        "routes_added": sorted(set(new_routes) - set(old_routes)),
        "routes_removed": sorted(set(old_routes) - set(new_routes)),
        "stage_changes": {},
        "weight_changes": {},
        "other_changes": [],
    }
    for name in sorted(set(old_routes) & set(new_routes)):
        a, b = old_routes[name], new_routes[name]
        if a.stage != b.stage:
            changes["stage_changes"][name] = [a.stage.value, b.stage.value]
        wa = a.split.extracted_weight if a.split else None
        wb = b.split.extracted_weight if b.split else None
        if wa != wb:
            changes["weight_changes"][name] = [wa, wb]
        # A route that only moved in the file (its line number) did not change.
        if (
            dataclasses.replace(a, line=0) != dataclasses.replace(b, line=0)
            and name not in changes["stage_changes"]
            and name not in changes["weight_changes"]
        ):
            changes["other_changes"].append(name)
    return changes


class Proxy:
    """One proxy process: data plane, admin listener, reloads, graceful shutdown."""

    def __init__(
        self,
        config_path: str | os.PathLike[str],
        *,
        registry: CollectorRegistry | None = None,
        access_stream: Any = None,
        admin_token: str | None = None,
        allow_pure_python_parser: bool = False,
        reuse_port: bool = False,
        watch_interval: float = 0.5,
    ) -> None:
        self.path = Path(config_path)
        self.logger = get_logger("strangler")
        self.metrics = Metrics(registry)
        # Stat before reading: an edit landing between this and the watcher's start is not missed.
        self._watched_stat = self._stat()
        self.config = load_config(self.path)
        self.source_digest = self._digest(self.config.source)
        self._failed_digest: str | None = None
        token_env = self.config.admin.token_env
        self.admin_token = (
            admin_token if admin_token is not None else (os.environ.get(token_env) or None)
        )
        self.allow_pure_python_parser = allow_pure_python_parser
        self.reuse_port = reuse_port
        self.watch_interval = watch_interval
        self.access_stream = access_stream
        settings = self.config.logging.access
        self.access = AccessLog(
            access_stream,
            path=settings.path if access_stream is None else None,
            flush_interval=settings.flush_interval,
            enabled=settings.enabled,
        )
        kept = self.config.mismatches
        self.shadow = ShadowHub(
            self.metrics,
            self.logger,
            store=MismatchStore(kept.keep, kept.preview_bytes),
            jsonl_path=kept.jsonl_path,
        )
        self.snapshot: Snapshot | None = None
        self.plane: DataPlane | None = None
        self.server: asyncio.AbstractServer | None = None
        self.admin_runner: web.AppRunner | None = None
        self.ready = False
        self.stopping = False
        self.last_error: dict[str, Any] | None = None
        self.reload_history: list[dict[str, Any]] = []
        self._watch_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._flush_handle: asyncio.TimerHandle | None = None
        self.port = 0
        self.admin_port = 0

    @staticmethod
    def _digest(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    # ---- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self._check_parser()
        admin = self.config.admin
        if not _is_loopback(admin.host) and not self.admin_token:
            raise StartupError(
                f"admin listener {admin.host}:{admin.port} is not loopback: set the bearer token "
                f"in ${admin.token_env} or bind admin to 127.0.0.1"
            )
        loop = asyncio.get_running_loop()
        self.access.bind_loop(loop)
        self.snapshot = build_snapshot(
            self.config, None, self.metrics, self._on_breaker, self.shadow
        )
        self.plane = DataPlane(loop, self.snapshot, self.metrics, self.access, self.logger)
        self.metrics.last_reload.set(time.time())
        self.metrics.reloads.labels("success")
        listen = self.config.listen
        plane = self.plane
        try:
            self.server = await loop.create_server(
                lambda: ClientConnection(plane),
                listen.host,
                listen.port,
                backlog=listen.backlog,
                reuse_port=self.reuse_port or None,
            )
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {listen.host}:{listen.port}: {exc.strerror}"
            ) from exc
        sock = self.server.sockets[0]
        self.port = sock.getsockname()[1]
        from strangler.admin import build_admin_app  # admin imports app for typing only

        self.admin_runner = web.AppRunner(
            build_admin_app(self), access_log=None, handle_signals=False
        )
        await self.admin_runner.setup()
        site = web.TCPSite(
            self.admin_runner, admin.host, admin.port, reuse_port=self.reuse_port or None
        )
        try:
            await site.start()
        except OSError as exc:
            await self.admin_runner.cleanup()
            self.server.close()
            raise StartupError(
                f"cannot listen on admin {admin.host}:{admin.port}: {exc.strerror}"
            ) from exc
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.admin_port = server.sockets[0].getsockname()[1]
        self._watch_task = loop.create_task(self._watch())
        self._flush_metrics()
        self.ready = True
        self.logger.info(
            "strangler.started",
            listen=f"{listen.host}:{self.port}",
            admin=f"{admin.host}:{self.admin_port}",
            config=str(self.path),
            version=self.config.version,
            routes=len(self.config.routes),
            build=build(),
        )

    def _check_parser(self) -> None:
        if self.allow_pure_python_parser:
            return
        if os.environ.get("AIOHTTP_NO_EXTENSIONS"):
            raise StartupError(
                "AIOHTTP_NO_EXTENSIONS is set: aiohttp's pure-Python HTTP parser has had request "
                "smuggling advisories. Unset it or pass --allow-pure-python-parser."
            )
        if importlib.util.find_spec("aiohttp._http_parser") is None:
            raise StartupError(
                "aiohttp's C parser is not available; the pure-Python parser has had request "
                "smuggling advisories. Pass --allow-pure-python-parser to run anyway."
            ) from None

    def _flush_metrics(self) -> None:
        """Per-request counts are batched (RouteMetrics); a scrape flushes them, and so does
        this tick, for scrapes answered by another worker under --workers."""
        self.metrics.flush()
        if not self.stopping:
            self._flush_handle = asyncio.get_running_loop().call_later(1.0, self._flush_metrics)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload("sighup")))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: loop.create_task(self.stop()))

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def stop(self) -> None:
        """Graceful shutdown: not ready, stop accepting, drain in-flight requests, close."""
        if self.stopping:
            return
        self.stopping = True
        self.ready = False
        self.logger.info("strangler.stopping", in_flight=self.in_flight())
        if self._watch_task is not None:
            self._watch_task.cancel()
        if self.server is not None:
            self.server.close()
        plane = self.plane
        if plane is not None:
            for conn in list(plane.connections):
                conn.shutdown()
            deadline = time.monotonic() + self.config.shutdown.drain_timeout
            # Polled: connections and shadow copies end in callbacks, with no awaitable to join.
            while (plane.connections or self.shadow_in_flight()) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            for conn in list(plane.connections):
                conn._close(abort=True)
        if self.snapshot is not None:
            for up in self.snapshot.upstreams.values():
                up.pool.close()
        self.shadow.close()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self.metrics.flush()
        if self.admin_runner is not None:
            await self.admin_runner.cleanup()
        self.access.close()
        self.logger.info("strangler.stopped")
        self._stopped.set()

    def in_flight(self) -> int:
        plane = self.plane
        return 0 if plane is None else sum(1 for c in plane.connections if c.current is not None)

    def shadow_in_flight(self) -> int:
        if self.snapshot is None:
            return 0
        return sum(r.shadow.in_flight for r in self.snapshot.routes.values() if r.shadow)

    # ---- reload -------------------------------------------------------------------------
    async def reload(self, trigger: str = "api") -> ReloadResult:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            return self._reload_failed(trigger, [f"{self.path}: cannot read: {exc.strerror}"])
        digest = self._digest(text)
        if digest == self.source_digest:
            self.last_error = None  # the serving text is back: nothing to rebuild, nothing wrong
            self._failed_digest = None
            return ReloadResult(ok=True, changed=False, version=self.config.version)
        if digest == self._failed_digest and self.last_error is not None:
            # The same broken text again: still a failure, but not counted or logged twice.
            return ReloadResult(
                ok=False,
                changed=False,
                version=self.config.version,
                errors=list(self.last_error["errors"]),
            )
        try:
            config = load_config(self.path)
            # Listeners are bound once: a change is reported and waits for a restart, and the
            # effective config keeps showing the addresses actually in use.
            restart = [
                name
                for name in ("listen", "admin")
                if getattr(config, name) != getattr(self.config, name)
            ]
            if restart:
                self.logger.warning("strangler.config.restart_required", sections=restart)
                config = dataclasses.replace(
                    config, listen=self.config.listen, admin=self.config.admin
                )
            snapshot = build_snapshot(
                config, self.snapshot, self.metrics, self._on_breaker, self.shadow
            )
        except ConfigError as exc:
            self._failed_digest = digest  # do not log the same broken file twice
            return self._reload_failed(trigger, [str(issue) for issue in exc.errors])
        except Exception as exc:  # a bug must not take the proxy down with it
            self.logger.error("strangler.config.build_failed", exc_info=exc)
            return self._reload_failed(trigger, [f"{self.path}: internal error: {exc}"])
        old_config = self.config
        old_snapshot = self.snapshot
        self.config = config
        # The file can move on a reload; the in-memory ring keeps its size until a restart.
        self.shadow.jsonl_path = config.mismatches.jsonl_path
        self.snapshot = snapshot
        if self.plane is not None:
            self.plane.install(snapshot)
        self.source_digest = digest
        self._failed_digest = None
        if old_snapshot is not None:
            retire_snapshot(old_snapshot, snapshot)  # requests in flight keep their connections
        changes = audit_changes(old_config, config)
        if restart:
            changes["restart_required"] = restart
        self.last_error = None
        self.metrics.reloads.labels("success").inc()
        self.metrics.last_reload.set(time.time())
        entry = {
            "at": time.time(),
            "trigger": trigger,
            "ok": True,
            "version": config.version,
            "changes": changes,
        }
        self._remember(entry)
        self.logger.info(
            "strangler.config.reloaded", trigger=trigger, version=config.version, **changes
        )
        return ReloadResult(ok=True, changed=True, version=config.version, changes=changes)

    def _reload_failed(self, trigger: str, errors: list[str]) -> ReloadResult:
        self.metrics.reloads.labels("failure").inc()
        self.last_error = {"at": time.time(), "trigger": trigger, "errors": errors}
        self._remember({"at": time.time(), "trigger": trigger, "ok": False, "errors": errors})
        self.logger.error(
            "strangler.config.reload_failed",
            trigger=trigger,
            errors=errors,
            kept_version=self.config.version,
        )
        return ReloadResult(ok=False, changed=False, version=self.config.version, errors=errors)

    def _remember(self, entry: dict[str, Any]) -> None:
        self.reload_history.append(entry)
        del self.reload_history[:-50]

    async def _watch(self) -> None:
        last = self._watched_stat
        while True:
            await asyncio.sleep(self.watch_interval)
            current = self._stat()
            if current != last:
                last = current
                await self.reload("watch")

    def _stat(self) -> tuple[float, int, int] | None:
        try:
            st = os.stat(self.path)  # follows symlinks: Kubernetes ConfigMaps swap a link
        except OSError:
            return None
        return (st.st_mtime, st.st_size, st.st_ino)

    # ---- events -------------------------------------------------------------------------
    def _on_breaker(self, route: str, upstream: str, old: BreakerState, new: BreakerState) -> None:
        self.logger.warning(
            f"strangler.breaker.{new.value}", route=route, upstream=upstream, previous=old.value
        )

    def route_summaries(self) -> list[dict[str, Any]]:
        snapshot = self.snapshot
        if snapshot is None:
            return []
        out = []
        for rt in snapshot.routes.values():
            info = rt.snapshot()
            share = rt.progress.extracted_share()
            info["observed_extracted_share"] = None if share is None else round(share, 2)
            _, total = rt.progress.counts()
            info["requests_window"] = total
            info["configured_extracted_weight"] = extracted_weight(rt.config, snapshot.upstreams)
            out.append(info)
        return out


def free_port(host: str = "127.0.0.1") -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
