"""perf profile of strangler during one c32 wrk run: where the CPU goes, C and Python alike.

strangler's data plane is compiled (mypyc), so its functions are native code that py-spy's
Python stacks cannot see; `perf record` samples the whole process: the kernel (socket system
calls), libpython (the interpreter and the object runtime), the compiled data plane
(`CPyDef_<module>___<function>` symbols), httptools' llhttp and uvloop. One extra wrk run, not
part of the measured ones. Tables: share of samples by shared object, and the top symbols by
their own samples.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from loadgen import run_wrk

TOP = 25


def _report(data: Path, sort: str) -> list[tuple[float, str]]:
    argv = ["perf", "report", "-i", str(data), "--no-children", "--stdio", "-g", "none"]
    out = subprocess.run(
        [*argv, "--sort", sort],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "%" not in line.split()[0]:
            continue
        share, _, name = line.partition(" ")
        name = " ".join(name.split()).removesuffix(" - -")
        rows.append((float(share.rstrip("%")), name))
    return rows


def profile(
    name: str, pid: int, url: str, seconds: float, out_dir: Path, tmp: Path
) -> dict[str, Any]:
    """Profile the process `pid` under c32 load; write a text file; return the report's tables."""
    data = tmp / f"perf-{name}.data"
    recorder = subprocess.Popen(
        ["perf", "record", "-F", "999", "-g", "-o", str(data), "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        run_wrk(url, 32, seconds)
    finally:
        recorder.send_signal(2)
        _, err = recorder.communicate(timeout=60)
    try:
        by_object = _report(data, "dso")
        by_symbol = _report(data, "dso,symbol")[:TOP]
    except (subprocess.CalledProcessError, OSError) as exc:
        message = f"perf failed: {exc} {err.decode(errors='replace')[-300:]}"
        print(f"  profile failed: {message}", flush=True)
        return {"table": [message], "files": []}
    table = [
        "`perf record -F 999 -g` over one c32 run, all threads; shares of the process's samples.",
        "",
        "| shared object | share |",
        "|---|---:|",
        *(f"| `{obj}` | {share:.1f} % |" for share, obj in by_object if share >= 0.5),
        "",
        "| # | symbol (own samples) | share |",
        "|---:|---|---:|",
        *(f"| {n} | `{sym}` | {share:.1f} % |" for n, (share, sym) in enumerate(by_symbol, 1)),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    text_path = out_dir / f"profile-{name}-c32.txt"
    text_path.write_text("\n".join(table) + "\n")
    print(f"  profile: {text_path.name}", flush=True)
    return {"table": table, "files": [text_path.name]}
