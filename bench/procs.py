"""Processes of the benchmark: start pinned to a CPU, wait for a port, measure, stop by PID.

Every process the benchmark starts is a child of this script, started in its own session and
stopped through its PID (SIGTERM, then SIGKILL after a grace period): nothing is found by name.
CPU time and peak RSS come from /proc and cover the whole process tree under the PID started
(nginx's master and worker; strangler's supervisor and its workers).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A loopback port free right now (the kernel's pick; the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Return once 127.0.0.1:port accepts connections; raise if the process died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f}s")


@dataclass
class Managed:
    """A started process, its log file and the CPUs it is pinned to."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start(
    name: str, argv: Sequence[str], cpus: set[int] | None, log_dir: Path, cwd: Path | None = None
) -> Managed:
    """Start argv with stdout and stderr to ``log_dir/name.log``, pinned to ``cpus`` if given."""
    log_path = log_dir / f"{name}.log"

    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=pin,
            cwd=cwd,
        )
    return Managed(name, proc, log_path)


def stop(managed: Managed, grace: float = 10.0) -> None:
    """SIGTERM the process (and its session, which only holds what it started), then SIGKILL."""
    proc = managed.proc
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace)
    # Children that outlived their parent (a worker of a crashed supervisor) share its session.
    _signal_group(proc.pid, signal.SIGKILL)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def process_tree(root: int) -> list[int]:
    """The PID and every live descendant of it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def cpu_seconds(pids: Sequence[int]) -> float:
    """User plus system CPU time of these processes (live ones; a vanished one counts 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / CLOCK_TICKS


def peak_rss_bytes(pids: Sequence[int]) -> int:
    """Sum over these processes of VmHWM, each one's peak resident set since it started."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) * 1024
    return total


def system_busy_seconds() -> float:
    """CPU time all CPUs spent busy (user, nice, system, steal) since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    user, nice, system, steal = (int(fields[i]) for i in (1, 2, 3, 8))
    return (user + nice + system + steal) / CLOCK_TICKS


def own_seconds() -> float:
    """CPU time of this script and everything it started, finished children included."""
    total = 0
    for pid in process_tree(os.getpid()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return total / CLOCK_TICKS


class ForeignLoad:
    """Share of the machine's CPUs used by processes outside the benchmark over an interval."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.busy = system_busy_seconds()
        self.own = own_seconds()

    def percent(self) -> float:
        wall = time.monotonic() - self.started
        busy = system_busy_seconds() - self.busy
        own = own_seconds() - self.own
        cpus = os.cpu_count() or 1
        return max(0.0, 100.0 * (busy - own) / (wall * cpus)) if wall > 0 else 0.0
