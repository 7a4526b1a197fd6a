"""`strangler serve --workers N`: N proxy processes sharing the listening ports (SO_REUSEPORT).

The parent only supervises: it starts N workers (each a full single-process proxy bound with
SO_REUSEPORT, so the kernel spreads connections across them), forwards SIGHUP (reload) and
SIGTERM/SIGINT (graceful drain) to every worker, restarts a worker that dies unexpectedly, and exits
when all workers have exited after a stop signal.

Metrics stay correct when scraped: the parent points `PROMETHEUS_MULTIPROC_DIR` at a fresh directory
before the workers start, every worker writes its values there, and `/metrics` on any worker (the
admin port is shared too) aggregates all of them (prometheus_client's multiprocess mode: counters
and histograms are summed; route stage, weight and build info report the maximum; breaker states are
per worker, with a `pid` label, since breakers are per process).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType

__all__ = ["run_workers"]


def _worker_command(args: argparse.Namespace) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "strangler.cli",
        "serve",
        "--config",
        str(args.config),
        "--reuse-port",
    ]
    if args.log_level:
        cmd += ["--log-level", args.log_level]
    if args.log_format:
        cmd += ["--log-format", args.log_format]
    if args.allow_pure_python_parser:
        cmd.append("--allow-pure-python-parser")
    return cmd


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the supervisor dies, so no worker is orphaned (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_workers(args: argparse.Namespace) -> int:
    from prometheus_client import multiprocess

    metrics_dir = tempfile.mkdtemp(prefix="strangler-metrics-")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    command = _worker_command(args)
    workers: dict[int, subprocess.Popen[bytes]] = {}
    stopping = False
    exit_code = 0

    def spawn() -> None:
        proc = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent)
        workers[proc.pid] = proc

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping, exit_code
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for proc in workers.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        for _ in range(args.workers):
            spawn()
        failures_at: list[float] = []
        while workers:
            time.sleep(0.1)
            for pid, proc in list(workers.items()):
                code = proc.poll()
                if code is None:
                    continue
                del workers[pid]
                multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]
                if stopping:
                    continue
                failures_at = [t for t in failures_at if t > time.monotonic() - 10] + [
                    time.monotonic()
                ]
                if code == 2 or len(failures_at) > 5:
                    exit_code = code or 1
                    # 2: the worker refused to start (bad config, port in use): do not loop.
                    print(f"strangler: worker {pid} exited with {code}; stopping", file=sys.stderr)
                    forward(signal.SIGTERM, None)
                    stopping = True
                    continue
                print(f"strangler: worker {pid} exited with {code}; restarting", file=sys.stderr)
                spawn()
        return exit_code
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.kill()
        shutil.rmtree(metrics_dir, ignore_errors=True)
