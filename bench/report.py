"""The Performance page's tables and chart (docs/performance.md), from a run's JSON.

    nox -s bench -- report [RESULTS.json] [--chart PNG]   (python -m bench.report ...)

prints the tables in Markdown (default: bench/results/latest.json); `nox -s bench` writes the
same tables to latest.md and the chart to latest.png after a full run, and the Performance
page shows both as they are. Older result files, without some columns, print them as "–".
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from bench.targets import STAGE_LABELS, STAGES, check

RESULTS = Path(__file__).resolve().parent / "results"
DASH = "–"


def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return f"{value:.{digits}f}"


def _naive_seconds(naive: dict[str, Any]) -> str:
    if naive.get("timed_out"):
        return f"> {naive['bound_seconds']:.0f}"
    return _num(naive["wall_seconds"])


def _ratio(mis: dict[str, Any], other: dict[str, Any]) -> str:
    """MIS's time over another's; over a stopped one's bound, an upper limit."""
    if other.get("timed_out"):
        return f"< {mis['wall_seconds'] / other['bound_seconds']:.2f}"
    return f"{mis['wall_seconds'] / other['wall_seconds']:.2f}"


def profiles_table(results: dict[str, Any]) -> str:
    lines = [
        "| profile | MIS s | floor s | naive s | MIS/floor | MIS/naive | MIS MB/s "
        "| peak RSS MB MIS / naive | CPU s MIS / floor / naive | MIS cores "
        "| MIS receive / stage / MAP / pack+send / delete s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    # before schema 2, MIS's CPU was its own process's and the naive service's included its start
    counted = results.get("schema", 1) >= 2
    for name, r in results["profiles"].items():
        m, f, n = r["mis"], r["floor"], r["naive"]
        st = m.get("stages", {})
        stages = " / ".join(_num(st.get(s)) for s in (*STAGES, "delete"))
        cores = m.get("cores", {}).get("used")
        naive_rss = DASH if n.get("timed_out") else _num(n.get("peak_rss_mb"), 0)
        naive_cpu = DASH if n.get("timed_out") or not counted else _num(n.get("cpu_seconds"), 1)
        mis_cpu = _num(m.get("cpu_seconds"), 1) if counted else DASH
        lines.append(
            f"| {name} | {_num(m['wall_seconds'])} | {_num(f['wall_seconds'])} "
            f"| {_naive_seconds(n)} | {_ratio(m, f)} | {_ratio(m, n)} "
            f"| {_num(m['throughput_mb_s'], 0)} "
            f"| {_num(m['peak_rss_mb'], 0)} / {naive_rss} "
            f"| {mis_cpu} / {_num(f.get('cpu_seconds'), 1)} / {naive_cpu} "
            f"| {DASH if cores is None else cores} | {stages} |"
        )
    return "\n".join(lines)


def busy_table(results: dict[str, Any]) -> str:
    """p99 (and probe count) of the busy answers during each stage of a request."""
    busy = results.get("busy_latency", {})
    if not busy or not all(isinstance(v, dict) and "receive" in v for v in busy.values()):
        return ""  # none, or an older run's (phases seen by the client, not stages)
    head = " | ".join(f"{STAGE_LABELS[s]} p99 ms (probes)" for s in STAGES)
    lines = [f"| busy answers during | {head} |", "| --- |" + " --- |" * len(STAGES)]
    for profile, stages in busy.items():
        cells = " | ".join(
            f"{_num(stages[s].get('p99_ms'), 1)} ({stages[s].get('probes', 0)})" for s in STAGES
        )
        lines.append(f"| {profile} | {cells} |")
    return "\n".join(lines)


def noise_table(results: dict[str, Any]) -> str:
    """What the rest of the machine did during each measured run: CPU seconds beyond the
    measured processes and the bench's own, I/O wait, steal (a shared machine's noise)."""
    rows = []
    for name, r in results["profiles"].items():
        cells = []
        for key in ("mis", "floor", "naive"):
            noise = r[key].get("machine")
            cells.append(
                DASH
                if noise is None
                else f"{noise['others_cpu_seconds']:.1f} / {noise['iowait_seconds']:.1f} "
                f"/ {noise['steal_seconds']:.1f}"
            )
        if any(c != DASH for c in cells):
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
    if not rows:
        return ""
    head = "| meanwhile, others' CPU / I/O wait / steal s | MIS | floor | naive |"
    return "\n".join([head, "| --- | --- | --- | --- |", *rows])


def targets_table(results: dict[str, Any]) -> str:
    checked = results.get("targets") or check(results)
    lines = ["| target | limit | measured | met |", "| --- | --- | --- | --- |"]
    for c in checked:
        measured = DASH if c["measured"] is None else f"{_num(c['measured'])} {c['unit']}"
        met = {True: "yes", False: "**MISSED**", None: "not measured"}[c["met"]]
        lines.append(f"| {c['target']} | {c['limit']} | {measured} | {met} |")
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    load = m.get("load_average")
    where = m.get("work_dir_fs")
    notes = [
        f"{m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, Python {m['python']}",
        f"load average {' / '.join(f'{x:.1f}' for x in load)} (1/5/15 min) at the start"
        if load
        else "",
        f"work folder on {where['type']}" if where else "",
        f"the runs on {m['runs_on']}" if m.get("runs_on") else "",
    ]
    parts = [
        f"Measured {results['when']}: " + "; ".join(n for n in notes if n) + ".",
        profiles_table(results),
        busy_table(results),
        noise_table(results),
        targets_table(results),
    ]
    return "\n\n".join(p for p in parts if p)


def chart(results: dict[str, Any], target: Path) -> None:
    """Time and peak memory of MIS, the floor and the naive service per profile (bars, log
    scale), and where MIS's time goes (stages, as shares of its end-to-end time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, ScalarFormatter

    names = list(results["profiles"])
    fig, (times, memory, stages) = plt.subplots(1, 3, figsize=(15, 4.6))
    width = 0.27
    sides = [("mis", "MIS"), ("floor", "floor (unzip+cp+zip -1)"), ("naive", "naive service")]
    for i, (key, label) in enumerate(sides):
        xs = [j + (i - 1) * width for j in range(len(names))]
        walls, peaks, hatches = [], [], []
        for n in names:
            side = results["profiles"][n][key]
            out = bool(side.get("timed_out"))
            walls.append(side["bound_seconds"] if out else side["wall_seconds"])
            peaks.append(float("nan") if out else side["peak_rss_mb"])
            hatches.append("//" if out else "")
        bars = times.bar(xs, walls, width, label=label)
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)  # hatched: stopped at its bound, slower than shown
        memory.bar(xs, peaks, width, label=label)
    for axis, title, unit in [
        (times, "End-to-end time (hatched: stopped at its bound)", "seconds"),
        (memory, "Peak memory", "RSS, MB"),
    ]:
        axis.set_yscale("log")
        axis.yaxis.set_major_formatter(ScalarFormatter())  # 100, not 10^2
        axis.yaxis.set_minor_formatter(FuncFormatter(_minor_label))
        axis.set_xticks(range(len(names)), names, rotation=15, fontsize=8)
        axis.set_ylabel(unit)
        axis.set_title(title, fontsize=10)
        axis.grid(True, axis="y", which="both", alpha=0.3)
        axis.legend(fontsize=8)
    bottoms = [0.0] * len(names)
    for stage in (*STAGES, "delete"):
        shares = []
        for n in names:
            mis = results["profiles"][n]["mis"]
            shares.append(mis.get("stages", {}).get(stage, 0.0) / mis["wall_seconds"])
        label = STAGE_LABELS.get(stage, "delete (after the response)")
        stages.bar(range(len(names)), shares, 0.6, bottom=bottoms, label=label)
        bottoms = [b + s for b, s in zip(bottoms, shares, strict=True)]
    labels = []
    for n in names:
        mis = results["profiles"][n]["mis"]
        cpu, cores = mis.get("cpu_seconds"), mis.get("cores", {}).get("used")
        extra = f"\n{cpu:.1f} CPU s, {cores} cores" if cpu is not None and cores else ""
        labels.append(n + extra)
    stages.set_xticks(range(len(names)), labels, rotation=15, fontsize=8)
    stages.axhline(1.0, color="black", linewidth=0.8)  # the response's end
    stages.set_ylim(0, max([1.0, *bottoms]) * 1.4)  # room for the legend above the bars
    stages.set_ylabel("share of MIS's end-to-end time")
    stages.set_title("MIS stages (delete runs after the response)", fontsize=10)
    stages.legend(fontsize=7, loc="upper center", ncol=3)
    m = results["machine"]
    load = m.get("load_average")
    fig.suptitle(
        f"MIS vs baselines — {m['cores']} cores, {m['cpu']}"
        + (f", load {load[0]:.1f}" if load else ""),
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)


def _minor_label(value: float, _: int) -> str:
    """Label 2x and 5x a power of ten on a log axis, no other minor tick."""
    return f"{value:g}" if f"{value:.0e}"[0] in "25" else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="?", default=RESULTS / "latest.json")
    parser.add_argument("--chart", type=Path, help="also draw the chart into this PNG")
    options = parser.parse_args()
    results = json.loads(options.results.read_text())
    print(markdown(results))
    if options.chart:
        chart(results, options.chart)


if __name__ == "__main__":
    main()
