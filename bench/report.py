"""The benchmark's results: medians of the runs, the markdown tables and the JSON beside them.

Every figure in a table is the median over the runs of that figure (each column separately).
CPU µs per request is the proxy's process tree user+system CPU time during a wrk run divided by
the requests wrk completed in it; peak RSS is the sum of VmHWM over that tree.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from loadgen import StreamResult, WrkResult


@dataclass
class LoadRun:
    """One wrk run at one concurrency with the proxy's CPU cost per request (None: direct)."""

    wrk: WrkResult
    cpu_us_per_request: float | None
    foreign_cpu_pct: float  # share of all CPUs used by other processes of the machine meanwhile


@dataclass
class ProxyResult:
    """Everything measured for one proxy; ``note`` explains a missing figure."""

    key: str
    label: str
    c1: list[LoadRun] = field(default_factory=list)
    c32: list[LoadRun] = field(default_factory=list)
    peak_rss_bytes: int | None = None
    upload: StreamResult | None = None
    download: StreamResult | None = None
    stream_peak_rss_bytes: int | None = None
    stream_error: str | None = None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summary(result: ProxyResult) -> dict[str, float | None]:
    """The medians the tables show."""

    def med(runs: list[LoadRun], pick: str) -> float | None:
        if pick == "cpu":
            return median([r.cpu_us_per_request for r in runs])
        return median([getattr(r.wrk, pick) for r in runs])

    return {
        "rps_c32": med(result.c32, "rps"),
        "p50_ms_c32": med(result.c32, "p50_ms"),
        "p99_ms_c32": med(result.c32, "p99_ms"),
        "cpu_us_c32": med(result.c32, "cpu"),
        "rps_c1": med(result.c1, "rps"),
        "p50_ms_c1": med(result.c1, "p50_ms"),
        "p99_ms_c1": med(result.c1, "p99_ms"),
        "cpu_us_c1": med(result.c1, "cpu"),
        "other_load_pct": median([r.foreign_cpu_pct for r in result.c1 + result.c32]),
    }


def _num(value: float | None, fmt: str, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{fmt}}{suffix}"


def _mib(nbytes: int | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / (1 << 20):.1f} MiB"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or not b else f"{a / b:.2f}"


def requests_table(results: Sequence[ProxyResult]) -> list[str]:
    direct = next((r for r in results if r.key == "direct"), None)
    direct_p50 = summary(direct)["p50_ms_c1"] if direct else None
    lines = [
        "| proxy | req/s c32 | p50 c32 | p99 c32 | CPU µs/req c32 | peak RSS "
        "| req/s c1 | p50 c1 | added median at c1 | other load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        if result.note and not result.c32:
            lines.append(f"| {result.label} | {result.note} |" + "  |" * 8)
            continue
        s = summary(result)
        added = (
            None
            if result.key == "direct" or direct_p50 is None or s["p50_ms_c1"] is None
            else s["p50_ms_c1"] - direct_p50
        )
        cells = [
            result.label,
            _num(s["rps_c32"], ",.0f"),
            _num(s["p50_ms_c32"], ".3f", " ms"),
            _num(s["p99_ms_c32"], ".3f", " ms"),
            _num(s["cpu_us_c32"], ".1f"),
            _mib(result.peak_rss_bytes),
            _num(s["rps_c1"], ",.0f"),
            _num(s["p50_ms_c1"], ".3f", " ms"),
            "—" if added is None else f"{added:+.3f} ms",
            _num(s["other_load_pct"], ".0f", "%"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def ratio_lines(results: Sequence[ProxyResult]) -> list[str]:
    by_key = {r.key: summary(r) for r in results if r.c32}
    strangler, nginx, naive = by_key.get("strangler"), by_key.get("nginx"), by_key.get("naive")
    if strangler is None:
        return ["No strangler figures: see the notes."]
    lines = []
    for other_key, other in (("nginx", nginx), ("naive", naive)):
        if other is None:
            continue
        lines.append(
            f"- strangler/{other_key}: throughput c32 "
            f"**{_ratio(strangler['rps_c32'], other['rps_c32'])}**, "
            f"CPU per request {_ratio(strangler['cpu_us_c32'], other['cpu_us_c32'])}, "
            f"throughput c1 {_ratio(strangler['rps_c1'], other['rps_c1'])}"
        )
    bare = by_key.get("strangler-bare")
    if bare is not None and bare["cpu_us_c32"] and strangler["cpu_us_c32"]:
        extra = strangler["cpu_us_c32"] - bare["cpu_us_c32"]
        lines.append(
            f"- strangler realistic/bare: throughput c32 "
            f"{_ratio(strangler['rps_c32'], bare['rps_c32'])}, CPU per request "
            f"{_ratio(strangler['cpu_us_c32'], bare['cpu_us_c32'])} "
            f"({extra:+.1f} µs: 20 routes, breaker, retries, shadow, access log)"
        )
    workers = by_key.get("strangler-w2")
    if workers is not None:
        lines.append(
            f"- strangler --workers 2 / strangler: throughput c32 "
            f"{_ratio(workers['rps_c32'], strangler['rps_c32'])}"
        )
    return lines


def stream_table(results: Sequence[ProxyResult], nbytes: int) -> list[str]:
    lines = [
        f"| proxy | upload MiB/s | download MiB/s "
        f"| peak RSS ({nbytes / (1 << 30):g} GiB each way) |",
        "|---|---:|---:|---:|",
    ]
    for result in results:
        if result.upload is None and result.download is None and result.stream_error is None:
            continue
        if result.stream_error:
            lines.append(f"| {result.label} | {result.stream_error} |  |  |")
            continue
        up = result.upload.mib_per_s if result.upload else None
        down = result.download.mib_per_s if result.download else None
        rss = _mib(result.stream_peak_rss_bytes) if result.key != "direct" else "—"
        lines.append(f"| {result.label} | {_num(up, ',.0f')} | {_num(down, ',.0f')} | {rss} |")
    return lines


def to_json(results: Sequence[ProxyResult], meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "meta": meta,
        "proxies": [{**asdict(r), "summary": summary(r)} for r in results],
    }


def document(results: Sequence[ProxyResult], meta: dict[str, Any], notes: Sequence[str]) -> str:
    """The whole markdown results file."""
    packages = ", ".join(f"{k} {v}" for k, v in meta["packages"].items() if k != "strangler")
    pinning = (
        "Proxy pinned to CPU 0, wrk and the backends to CPU 1 (`strangler --workers 2` may use "
        "both CPUs, so it shares CPU 1 with wrk and the backend)."
        if meta["pinned"]
        else "Not pinned: fewer than 2 CPUs."
    )
    lines = [
        "# strangler benchmark (issue 10)",
        "",
        f"{meta['date']} · {meta['nproc']} CPUs, {meta['cpu_model']} · kernel {meta['kernel']} · "
        f"Python {meta['python']} · {meta['nginx']} · {meta['wrk']} · strangler "
        f"{meta['strangler_commit']} · {packages}",
        "",
        f"`GET {meta['target']}` (a {meta['body_bytes']}-byte JSON answer from nginx), "
        f"wrk `-t1`, {meta['runs']} round(s) of {meta['seconds']:g} s per concurrency "
        f"(each proxy freshly started in each round), medians. {pinning} "
        "CPU µs/req: the proxy's process tree, user+system. Peak RSS: VmHWM summed over the tree. "
        "Other load: CPU share of the whole machine taken by processes outside the benchmark "
        "during the runs (a shared machine makes every figure noisier).",
        "",
        "## Requests",
        "",
        *requests_table(results),
        "",
        *ratio_lines(results),
        "",
        "strangler runs the realistic config (bench/configs/strangler.yaml): 20 routes, the "
        f"traffic on route 11 (breaker, retries, {meta['shadow_percent']:g}% shadowed and "
        "compared), metrics, access log to a file.",
        "",
    ]
    if meta["stream_bytes"]:
        lines += ["## Streaming", "", *stream_table(results, meta["stream_bytes"]), ""]
    for result in results:
        profile = result.extra.get("profile")
        if profile:
            lines += [f"## Profile: {result.label} (one extra c32 run)", ""]
            lines += [*profile["table"], "", f"Files: {', '.join(profile['files'])}", ""]
    facts = [
        f"- {r.label}: {json.dumps({k: v for k, v in r.extra.items() if k != 'profile'})}"
        for r in results
        if set(r.extra) - {"profile"}
    ]
    errors = [
        f"- {r.label}: {sum(x.wrk.non_2xx for x in r.c1 + r.c32)} non-2xx, "
        f"{sum(x.wrk.socket_errors for x in r.c1 + r.c32)} socket errors"
        for r in results
        if any(x.wrk.non_2xx or x.wrk.socket_errors for x in r.c1 + r.c32)
    ]
    if facts or errors or notes:
        lines += ["## Notes", "", *facts, *errors, *notes, ""]
    return "\n".join(lines)
