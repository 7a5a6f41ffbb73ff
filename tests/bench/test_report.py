"""The targets, the Performance page's tables and the chart, from results shaped as `nox -s bench`
writes them; the stage spans from a server log as MIS writes it."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest

from bench import report, run, targets
from bench.payloads import PROFILES, SMALL_FILES, file_bytes

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


def side(wall: float, **extra: Any) -> dict[str, Any]:
    return {"wall_seconds": wall, "throughput_mb_s": 1.0, "peak_rss_mb": 50.0, **extra}


def busy(p99: float | None) -> dict[str, Any]:
    return {
        stage: {"probes": 0 if p99 is None else 40, "p99_ms": p99, "p50_ms": p99}
        for stage in targets.STAGES
    }


RUN: dict[str, Any] = {
    "schema": 2,
    "when": "2026-12-02T00:00:00Z",
    "machine": {
        "cores": 2,
        "cpu": "test",
        "memory_gb": 1.0,
        "python": "3.11",
        "load_average": [1.5, 1.2, 0.9],
        "work_dir_fs": {"mount": "/", "type": "ext4"},
    },
    "profiles": {
        "CT-500x512KB": {
            "payload_mb": 250.0,
            "mis": side(
                2.0,
                cpu_seconds=3.5,
                cores={"used": 2},
                stages={"receive": 0.2, "extract": 0.5, "job": 0.3, "pack": 1.0, "delete": 0.1},
            ),
            "floor": side(5.0, cpu_seconds=4.0),
            "naive": side(8.0, cpu_seconds=7.0),
        },
        SMALL_FILES: {
            "payload_mb": 390.0,
            "mis": side(40.0, cpu_seconds=60.0, cores={"used": 2}, stages={"extract": 10.0}),
            "floor": side(50.0, cpu_seconds=20.0),
            "naive": {"timed_out": True, "bound_seconds": 500.0},
        },
    },
    "busy_latency": {"CT-500x512KB": busy(5.0), SMALL_FILES: busy(None)},
    "first_byte": {"process": {"median_ms": 1.5}},
}


def by_name(checked: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["target"]: c for c in checked}


def test_targets_met_missed_and_not_measured() -> None:
    checked = by_name(targets.check(RUN))
    assert checked["CT-500x512KB time / floor"]["met"] is True  # 0.40, at the limit
    assert checked[f"{SMALL_FILES} time / floor"]["met"] is False  # 0.80 > 0.75
    assert checked[f"{SMALL_FILES} MIS peak RSS"]["met"] is True
    assert checked["study-1GB time / floor"]["met"] is None  # not in this run
    assert checked["busy p99 under a burst of 200 (median of bursts)"]["met"] is None
    assert checked["busy p99 during stage, CT-500x512KB"]["met"] is True
    # a stage the prober never saw is not shown to meet its target
    assert checked[f"busy p99 during stage, {SMALL_FILES}"]["met"] is False
    assert checked["MAP done -> first byte, process backend (median)"]["met"] is True
    assert [m["target"] for m in targets.missed(targets.check(RUN))] == [
        f"{SMALL_FILES} time / floor",
        *(f"busy p99 during {s}, {SMALL_FILES}" for s in ("receive", "stage", "MAP", "pack+send")),
    ]


def test_peak_rss_target_is_strict() -> None:
    results = copy.deepcopy(RUN)
    results["profiles"][SMALL_FILES]["mis"]["peak_rss_mb"] = 100.0
    assert by_name(targets.check(results))[f"{SMALL_FILES} MIS peak RSS"]["met"] is False


def test_markdown_has_every_profile_stage_and_a_stopped_naive_service() -> None:
    table = report.profiles_table(RUN)
    rows = {line.split(" | ")[0]: line for line in table.splitlines()}
    ct = rows["| CT-500x512KB"]
    assert "| 0.40 | 0.25 |" in ct  # MIS/floor, MIS/naive
    assert "| 3.5 / 4.0 / 7.0 | 2 |" in ct  # CPU seconds, cores
    assert "0.20 / 0.50 / 0.30 / 1.00 / 0.10" in ct  # receive / stage / MAP / pack / delete
    small = rows[f"| {SMALL_FILES}"]
    assert "| > 500 | 0.80 | < 0.08 |" in small
    assert "| – / 10.00 / – / – / – |" in small  # stages the run did not report
    text = report.markdown(RUN)
    assert table in text
    assert "| CT-500x512KB | 5.0 (40) | 5.0 (40) | 5.0 (40) | 5.0 (40) |" in text  # busy
    assert "load average 1.5 / 1.2 / 0.9" in text
    assert "ext4" in text
    assert "| **MISSED** |" in text
    assert "| not measured |" in text


def test_the_committed_results_still_render() -> None:
    """An older run's JSON (no CPU with children, no delete, no stage busy latency)."""
    results = json.loads((RESULTS / "latest.json").read_text())
    text = report.markdown(results)
    assert all(f"| {name} |" in text for name in results["profiles"])


def test_chart(tmp_path: Path) -> None:
    report.chart(RUN, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stage_spans_from_the_servers_log(tmp_path: Path) -> None:
    lines = [
        ("-", "mis", "00.000", "starting"),
        ("abc", "mis", "01.000", "admitted"),
        ("other", "mis", "01.500", "received 9 bytes in 0.100s"),  # not the request's
        ("abc", "mis", "02.000", "received 5 bytes in 1.000s"),
        ("abc", "mis", "03.000", "staged 2 input file(s) in 1.000s"),
        ("abc", "mis", "03.100", "job started (timeout 600s)"),
        ("abc", "map", "03.500", "job finished? no: the MAP's own words"),
        ("abc", "mis", "04.000", "job finished in 0.900s: succeeded"),
        ("abc", "mis", "06.000", "responded with 10 bytes in 2.000s"),
    ]
    log = tmp_path / "server.log"
    log.write_text(
        "not json\n"
        + "".join(
            json.dumps(
                {
                    "time": f"2026-12-02T00:00:{second}+00:00",
                    "message": message,
                    "request_id": rid,
                    "source": source,
                }
            )
            + "\n"
            for rid, source, second, message in lines
        )
    )
    spans = run.stage_spans(log)
    base = spans["receive"][0]
    relative = {stage: (a - base, b - base) for stage, (a, b) in spans.items()}
    assert relative == {
        "receive": (0.0, 1.0),
        "extract": (1.0, 2.0),
        "job": (pytest.approx(2.1), 3.0),
        "pack": (3.0, 5.0),
    }


def test_the_small_files_profile() -> None:
    small = next(p for p in PROFILES if p.name == SMALL_FILES)
    assert (small.files, small.file_size, small.stored) == (100_000, 4096, True)
    names = [small.member(n) for n in range(small.files)]
    assert len(set(names)) == small.files
    folders = {name.rsplit("/", 1)[0] for name in names}
    assert len(folders) == 200
    assert len({f.split("/")[0] for f in folders}) == 10


def test_small_files_are_the_bytes_tiling_would_give() -> None:
    smooth = random.Random(1).randbytes(256 * 1024)
    for index in (0, 2, 4, 1000):  # even: smooth bodies
        data = file_bytes(index, 4096, smooth)
        header = (b"DICM" + f"(0020,0013) InstanceNumber {index}\n".encode() * 40)[:2048]
        offset = random.Random(index).randrange(0, len(smooth) // 2) & ~1
        assert len(data) == 4096
        assert data == header + (smooth * 2)[offset : offset + 4096 - len(header)]
