"""The benchmark of issue 10: strangler beside nginx and a naive aiohttp proxy, on loopback.

``python bench/run.py [--quick] [--out bench/results/latest.md]``

One run starts a fast nginx backend (a fixed ~200-byte JSON) and a streaming backend, then, one
at a time: nginx as a reverse proxy (the reference), the naive aiohttp proxy (the baseline),
strangler with the realistic config of bench/configs/strangler.yaml, and strangler with
``--workers 2``. Each proxy is pinned to CPU 0, wrk and the backends to CPU 1. wrk drives each at
concurrency 1 and 32 for a few seconds, several runs, and the medians go to a markdown table
(and a JSON file beside it). Then 1 GiB is streamed through each proxy in both directions, and
perf (or py-spy without perf) profiles strangler during one extra c32 run.

Installs nothing: without wrk or nginx it prints the apt command and exits 2. All traffic goes to
127.0.0.1; every process it starts is stopped by PID when it ends.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import perfprofile
import procs
import profiling
import report
from loadgen import download, run_wrk, upload
from report import LoadRun, ProxyResult

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CONFIGS = BENCH / "configs"
PYTHON = sys.executable
BODY = json.dumps(
    {
        "id": 42,
        "sku": "CAT-0042-BLUE",
        "name": "Blue ceramic mug, 350 ml",
        "price": {"amount": 1290, "currency": "EUR"},
        "stock": 137,
        "tags": ["kitchen", "ceramic", "gift"],
        "updated_at": "2026-11-26T12:00:00Z",
    },
    separators=(",", ":"),
)
TARGET_PATH = "/api/catalog/items/42"  # route 11 of 20 in the strangler config
PROXIES: dict[str, str] = {
    "nginx": "nginx 1 worker (reference)",
    "naive": "naive aiohttp proxy (baseline)",
    "lean": "lean Python proxy (the ceiling: httptools + uvloop, no features)",
    "strangler-bare": "strangler, bare (default route only, no access log)",
    "strangler": "strangler",
    "strangler-w2": "strangler --workers 2",
}
NO_STREAM_ROUTE = frozenset({"strangler-bare", "lean"})
PROFILED = frozenset({"strangler", "strangler-bare"})


def render(template: str, **values: object) -> str:
    text = (CONFIGS / template).read_text()
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", str(value))
    if "{{" in text:
        raise ValueError(f"{template}: unrendered placeholder left")
    return text


class Bench:
    """One benchmark run: the backends, each proxy in turn, the results."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.runs = 1 if args.quick else args.runs
        self.seconds = 2.0 if args.quick else args.seconds
        cpus = os.cpu_count() or 1
        self.pinned = cpus >= 2
        self.proxy_cpus = {0} if self.pinned else None
        self.load_cpus = {1} if self.pinned else None
        self.all_cpus = set(range(cpus))
        self.ports = {
            name: procs.free_port() for name in ("backend", "shadow", "stream", "proxy", "admin")
        }
        self.user = "user root;" if os.geteuid() == 0 else ""
        self.notes: list[str] = []
        self.results: list[ProxyResult] = []

    # ---- processes ---------------------------------------------------------------------
    def start_nginx(
        self, name: str, template: str, cpus: set[int] | None, **values: object
    ) -> procs.Managed:
        prefix = self.tmp / name
        prefix.mkdir()
        conf = prefix / "nginx.conf"
        conf.write_text(render(template, prefix=prefix, user=self.user, **values))
        return procs.start(
            name,
            [
                "nginx",
                "-c",
                str(conf),
                "-p",
                str(prefix),
                "-e",
                str(prefix / "error.log"),
                "-g",
                "daemon off;",
            ],
            cpus,
            self.tmp,
        )

    def start_script(self, key: str, script: str, *args: str) -> procs.Managed:
        """A Python proxy from bench/ on the proxy port, pinned like every proxy."""
        argv = [PYTHON, str(BENCH / script), "--port", str(self.ports["proxy"]), *args]
        return procs.start(key, argv, self.proxy_cpus, self.tmp)

    def start_proxy(self, key: str) -> tuple[procs.Managed, Callable[[], None]]:
        """Start one proxy on the proxy port; returns it and a readiness check."""
        port = self.ports["proxy"]
        if key == "nginx":
            managed = self.start_nginx(
                f"nginx-proxy-{time.monotonic_ns()}",
                "reference.nginx.conf",
                self.proxy_cpus,
                port=port,
                backend_port=self.ports["backend"],
                stream_port=self.ports["stream"],
            )
        elif key == "naive":
            managed = self.start_script(
                key,
                "naive_proxy.py",
                "--upstream",
                f"http://127.0.0.1:{self.ports['backend']}",
                "--stream-upstream",
                f"http://127.0.0.1:{self.ports['stream']}",
            )
        elif key == "lean":
            managed = self.start_script(
                key, "lean_proxy.py", "--upstream-port", str(self.ports["backend"])
            )
        else:
            workers = 2 if key == "strangler-w2" else 1
            config = self.tmp / f"{key}.yaml"
            config.write_text(
                render(
                    "strangler-bare.yaml" if key == "strangler-bare" else "strangler.yaml",
                    port=port,
                    admin_port=self.ports["admin"],
                    access_log=self.tmp / f"{key}-access.log",
                    backend_port=self.ports["backend"],
                    shadow_port=self.ports["shadow"],
                    stream_port=self.ports["stream"],
                    shadow_percent=self.args.shadow_percent,
                )
            )
            strangler = str(Path(PYTHON).with_name("strangler"))
            argv = [strangler, "serve", "--config", str(config)]
            if workers > 1:
                argv += ["--workers", str(workers)]
            cpus = self.proxy_cpus if workers == 1 else None
            managed = procs.start(key, argv, cpus, self.tmp)

        def ready() -> None:
            procs.wait_for_port(port, managed.proc)
            status, body = http_get(port, TARGET_PATH)
            if status != 200 or body != BODY.encode():
                raise RuntimeError(f"{key}: GET {TARGET_PATH} -> {status} {body[:200]!r}")

        return managed, ready

    # ---- measurements ------------------------------------------------------------------
    def wait_for_quiet(self) -> None:
        """On a shared machine, wait (bounded) for other processes' load to drop first."""
        deadline = time.monotonic() + self.args.max_wait
        while True:
            sample = procs.ForeignLoad()
            time.sleep(1.0)
            load = sample.percent()
            if load <= self.args.quiet_threshold or time.monotonic() >= deadline:
                break
            print(f"  waiting: other processes use {load:.0f}% of the machine", flush=True)

    def load(self, result: ProxyResult, port: int, root_pid: int | None, label: str) -> None:
        """One round: a warm-up, then a c1 and a c32 wrk run, each with its CPU cost."""
        url = f"http://127.0.0.1:{port}{TARGET_PATH}"
        if self.args.max_wait > 0:
            self.wait_for_quiet()
        run_wrk(url, 32, 1.0)  # warm-up: pools filled, caches hot
        pids = procs.process_tree(root_pid) if root_pid else []
        for connections, runs in ((1, result.c1), (32, result.c32)):
            foreign = procs.ForeignLoad()
            before = procs.cpu_seconds(pids)
            wrk = run_wrk(url, connections, self.seconds)
            used = procs.cpu_seconds(pids) - before
            cpu_us = used * 1e6 / wrk.requests if root_pid and wrk.requests else None
            runs.append(LoadRun(wrk, cpu_us, foreign.percent()))
            print(
                f"  {label} c{connections}: {wrk.rps:,.0f} req/s, "
                f"p50 {wrk.p50_ms:.3f} ms, p99 {wrk.p99_ms:.3f} ms"
                + (f", {cpu_us:.1f} µs CPU/req" if cpu_us is not None else "")
                + f", other load {runs[-1].foreign_cpu_pct:.0f}%"
                + (f", {wrk.non_2xx} non-2xx" if wrk.non_2xx else "")
                + (f", {wrk.socket_errors} socket errors" if wrk.socket_errors else ""),
                flush=True,
            )
        if root_pid:
            peak = procs.peak_rss_bytes(procs.process_tree(root_pid))
            result.peak_rss_bytes = max(result.peak_rss_bytes or 0, peak)

    def stream(self, result: ProxyResult, port: int, root_pid: int | None) -> None:
        nbytes = self.args.stream_bytes
        try:
            result.upload = upload(port, "/stream/upload", nbytes)
            result.download = download(port, f"/stream/download/{nbytes}", nbytes)
        except (OSError, RuntimeError, ValueError) as exc:
            result.stream_error = f"failed: {exc}"[:200]
        if root_pid:
            result.stream_peak_rss_bytes = procs.peak_rss_bytes(procs.process_tree(root_pid))
        up = f"{result.upload.mib_per_s:,.0f}" if result.upload else "-"
        down = f"{result.download.mib_per_s:,.0f}" if result.download else "-"
        print(
            f"  {result.label} stream: upload {up} MiB/s, download {down} MiB/s"
            + (f" ({result.stream_error})" if result.stream_error else ""),
            flush=True,
        )

    def started(self, result: ProxyResult) -> tuple[procs.Managed, bool]:
        """Start the proxy of ``result`` and check it answers; on failure note why."""
        managed, ready = self.start_proxy(result.key)
        try:
            ready()
        except RuntimeError as exc:
            tail = managed.log_tail(5)
            procs.stop(managed)
            if result.key == "strangler-w2" and "not supported" in tail:
                result.note = "not supported yet (`strangler serve --workers 2` exits 2)"
            else:
                result.note = f"did not start: {exc}"
                self.notes.append(f"- {result.label} did not start: {exc}\n\n```\n{tail}\n```")
            print(f"  {result.label}: {result.note}", flush=True)
            return managed, False
        return managed, True

    def proxy_round(self, result: ProxyResult, first: bool) -> None:
        """One round for one proxy: start it, measure it, stop it (a fresh process per round)."""
        if result.note:
            return  # it failed to start in an earlier round
        managed, ok = self.started(result)
        if not ok:
            return
        try:
            self.load(result, self.ports["proxy"], managed.pid, result.label)
            if first and result.key in ("strangler", "strangler-w2"):
                result.extra.update(self.strangler_facts(result.key))
            if first and result.key in PROFILED and not self.args.no_profile:
                profiler = perfprofile if shutil.which("perf") else profiling
                result.extra["profile"] = profiler.profile(
                    result.key,
                    managed.pid,
                    f"http://127.0.0.1:{self.ports['proxy']}{TARGET_PATH}",
                    self.seconds,
                    self.out_dir,
                    self.tmp,
                )
        finally:
            procs.stop(managed)

    def proxy_stream(self, result: ProxyResult) -> None:
        """The large transfers, through a fresh process so its peak RSS is the stream's own."""
        if result.note or result.key in NO_STREAM_ROUTE:
            return
        managed, ok = self.started(result)
        if not ok:
            return
        try:
            self.stream(result, self.ports["proxy"], managed.pid)
        finally:
            procs.stop(managed)

    def strangler_facts(self, key: str) -> dict[str, Any]:
        """Evidence the realistic features ran: access lines written, shadow requests sent."""
        time.sleep(0.1)  # one access-log flush interval and then some
        facts: dict[str, Any] = {}
        log = self.tmp / f"{key}-access.log"
        if log.exists():
            with log.open("rb") as f:
                facts["access_log_lines"] = sum(1 for _ in f)
        status, body = http_get(self.ports["admin"], "/metrics")
        if status == 200:
            facts["shadow_requests"] = {
                line.split('outcome="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
                for line in body.decode().splitlines()
                if line.startswith("strangler_shadow_requests_total{")
            }
        return facts

    @property
    def out_dir(self) -> Path:
        return Path(self.args.out).resolve().parent

    def run(self) -> None:
        backend = self.start_nginx(
            "backend",
            "backend.nginx.conf",
            self.load_cpus,
            port=self.ports["backend"],
            shadow_port=self.ports["shadow"],
            body=BODY,
        )
        streamer = procs.start(
            "stream-backend",
            [PYTHON, str(BENCH / "stream_backend.py"), "--port", str(self.ports["stream"])],
            self.load_cpus,
            self.tmp,
        )
        try:
            for port, managed in (
                (self.ports["backend"], backend),
                (self.ports["shadow"], backend),
                (self.ports["stream"], streamer),
            ):
                procs.wait_for_port(port, managed.proc)
            direct = ProxyResult("direct", "direct to the backend (no proxy)")
            proxies = [ProxyResult(key, PROXIES[key]) for key in self.args.proxies]
            self.results = [direct, *proxies]
            # Rounds, each proxy once per round: load from other processes on a shared machine
            # spreads over every proxy instead of landing on one.
            for round_number in range(self.runs):
                print(f"round {round_number + 1} of {self.runs}:", flush=True)
                self.load(direct, self.ports["backend"], None, direct.label)
                for result in proxies:
                    self.proxy_round(result, first=round_number == 0)
            if self.args.stream_bytes > 0:
                print("streaming:", flush=True)
                self.stream(direct, self.ports["stream"], None)
                for result in proxies:
                    self.proxy_stream(result)
        finally:
            procs.stop(streamer)
            procs.stop(backend)


def http_get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except OSError as exc:
        return 0, str(exc).encode()


def tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "missing"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else ""


def machine() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = tool_version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = tool_version(["git", "-C", str(REPO), "status", "--porcelain", "--", "strangler"])
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": tool_version(["nginx", "-v"]),
        "wrk": tool_version(["wrk", "-v"]),
        "packages": {
            name: importlib.metadata.version(name)
            for name in ("strangler", "aiohttp", "httptools", "uvloop", "prometheus-client")
        },
        "strangler_commit": commit
        + (" + uncommitted changes" if dirty != "missing" and dirty else ""),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="strangler beside nginx and a naive proxy")
    parser.add_argument("--quick", action="store_true", help="1 run of 2 s per concurrency")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each wrk run")
    parser.add_argument("--out", default=str(BENCH / "results" / "latest.md"))
    parser.add_argument("--stream-bytes", type=int, default=1 << 30, help="0 skips streaming")
    parser.add_argument("--shadow-percent", type=float, default=1.0)
    parser.add_argument("--proxies", nargs="+", choices=list(PROXIES), default=list(PROXIES))
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--quiet-threshold",
        type=float,
        default=15.0,
        help="before each measurement wait for other processes to use at most this %% of the CPUs",
    )
    parser.add_argument(
        "--max-wait", type=float, default=20.0, help="longest wait for quiet, seconds (0: none)"
    )
    args = parser.parse_args()
    missing = [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None]
    if missing:
        print(
            f"missing: {', '.join(missing)}; install with:\n"
            f"  apt-get install -y {' '.join(missing)}",
            file=sys.stderr,
        )
        return 2
    if (
        not args.no_profile
        and shutil.which("perf") is None
        and shutil.which("py-spy") is None
        and not Path(PYTHON).with_name("py-spy").exists()
    ):
        print(
            "neither perf nor py-spy (apt-get install linux-perf, or pip install py-spy): "
            "the profile is skipped",
            file=sys.stderr,
        )
        args.no_profile = True
    environment = machine()  # first: the date is the start's, and a failure here costs nothing
    with tempfile.TemporaryDirectory(prefix="strangler-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        if bench.load_cpus:
            os.sched_setaffinity(0, bench.load_cpus)  # wrk and the stream client run here
        bench.run()
    meta = {
        **environment,
        "runs": bench.runs,
        "seconds": bench.seconds,
        "stream_bytes": args.stream_bytes,
        "target": TARGET_PATH,
        "body_bytes": len(BODY),
        "shadow_percent": args.shadow_percent,
        "pinned": bench.pinned,
    }
    text = report.document(bench.results, meta, bench.notes)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    raw = report.to_json(bench.results, meta)
    out.with_suffix(".json").write_text(json.dumps(raw, indent=2) + "\n")
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
