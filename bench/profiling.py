"""py-spy profile of strangler during one c32 wrk run: a flamegraph and top functions as text.

Two extra wrk runs (not part of the measured ones, since sampling slows the process): one with
``py-spy record --format raw`` (collapsed stacks, aggregated by function), from which the top
functions by own time and by total time are computed, and one with the flamegraph SVG. Idle
samples (the event loop waiting in epoll) are left out by py-spy, so percentages are of the
samples where the process was running Python or C code.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from loadgen import run_wrk

TOP = 15
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
MAX_COMMITTED_SVG = 1 << 20


def py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else (shutil.which("py-spy") or "py-spy")


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({path})"


def top_functions(collapsed: str) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Samples, top functions by own time and by total time, from py-spy's raw format."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")[1:]]  # first frame: the process
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    return samples, own.most_common(TOP), total.most_common(TOP)


def _record(pid: int, fmt: str, path: Path, url: str, seconds: float) -> None:
    spy = subprocess.Popen(
        [
            py_spy(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds) + 1),
            "--rate",
            "200",
            "--function",
            "--format",
            fmt,
            "--output",
            str(path),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        run_wrk(url, 32, seconds)
        _, err = spy.communicate(timeout=seconds + 60)
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    if spy.returncode != 0 or not path.exists():
        raise RuntimeError(f"py-spy {fmt} failed: {err.decode(errors='replace')[-500:]}")


def profile(
    name: str, pid: int, url: str, seconds: float, out_dir: Path, tmp: Path
) -> dict[str, Any]:
    """Profile strangler (pid) under c32 load; write the files; return the tables for the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = tmp / f"profile-{name}.raw"
    svg = out_dir / f"profile-{name}-c32.svg"
    try:
        _record(pid, "raw", raw, url, seconds)
        _record(pid, "flamegraph", svg, url, seconds)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"  profile failed: {exc}", flush=True)
        return {"table": [f"Profile failed: {exc}"], "files": []}
    samples, own, total = top_functions(raw.read_text())
    table = [
        f"{samples} samples at 200 Hz (`--nonblocking`, idle excluded), aggregated by function.",
        "",
        "| # | function (own time) | own % | | function (total time) | total % |",
        "|---:|---|---:|---|---|---:|",
    ]
    for rank in range(max(len(own), len(total))):
        o_name, o_n = own[rank] if rank < len(own) else ("", 0)
        t_name, t_n = total[rank] if rank < len(total) else ("", 0)
        table.append(
            f"| {rank + 1} | `{o_name}` | {100 * o_n / max(samples, 1):.1f} | "
            f"| `{t_name}` | {100 * t_n / max(samples, 1):.1f} |"
        )
    text_path = out_dir / f"profile-{name}-c32.txt"
    text_path.write_text(
        "\n".join(table) + "\n\n# collapsed stacks (py-spy raw)\n" + raw.read_text()
    )
    files = [text_path.name, svg.name]
    if svg.stat().st_size > MAX_COMMITTED_SVG:
        files[-1] += f" ({svg.stat().st_size >> 10} KiB: too large to commit)"
    print("  profile: " + ", ".join(files), flush=True)
    return {"table": table, "files": files, "samples": samples, "own": own, "total": total}
