"""The performance targets of `nox -s bench`, checked on a run's results.

One rule for all: each target is checked on the number the run reports for it (a profile's
time: its median run, the single run for the big ones; busy answers: the p99 of all probes in
a stage; the burst: the median of its bursts' p99s; first byte: the median of its runs). A
target the run measured and missed is printed as MISSED and makes `nox -s bench` exit with
status 1, after the results are written; a target a partial run did not measure is listed as
not measured and fails nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from bench.payloads import SMALL_FILES

STAGES = ("receive", "extract", "job", "pack")  # the server's names for them
STAGE_LABELS = {"receive": "receive", "extract": "stage", "job": "MAP", "pack": "pack+send"}
BUSY_P99_MS = 20.0
BUSY_BURST_P99_MS = 50.0
FIRST_BYTE_MS = 5.0


@attrs.frozen
class Target:
    name: str
    limit: float
    unit: str
    below: bool  # met when measured < limit (else measured <= limit)
    measure: Callable[[dict[str, Any]], float | None]


def _floor_ratio(profile: str) -> Callable[[dict[str, Any]], float | None]:
    def measure(results: dict[str, Any]) -> float | None:
        entry = results.get("profiles", {}).get(profile)
        if entry is None:
            return None
        return float(entry["mis"]["wall_seconds"] / entry["floor"]["wall_seconds"])

    return measure


def _peak_rss(profile: str) -> Callable[[dict[str, Any]], float | None]:
    def measure(results: dict[str, Any]) -> float | None:
        entry = results.get("profiles", {}).get(profile)
        return None if entry is None else float(entry["mis"]["peak_rss_mb"])

    return measure


def _busy(profile: str, stage: str) -> Callable[[dict[str, Any]], float | None]:
    def measure(results: dict[str, Any]) -> float | None:
        stages = results.get("busy_latency", {}).get(profile)
        if stages is None:
            return None
        value = stages.get(stage, {}).get("p99_ms")
        return float("inf") if value is None else float(value)  # no probe: not shown to meet it

    return measure


def _path(*keys: str) -> Callable[[dict[str, Any]], float | None]:
    def measure(results: dict[str, Any]) -> float | None:
        value: Any = results
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return float(value)

    return measure


BUSY_PROFILES = ("CT-500x512KB", SMALL_FILES)  # busy answers are probed during these

TARGETS = [
    Target("CT-500x512KB time / floor", 0.40, "x", False, _floor_ratio("CT-500x512KB")),
    Target("study-1GB time / floor", 0.40, "x", False, _floor_ratio("study-1GB")),
    Target(f"{SMALL_FILES} time / floor", 0.75, "x", False, _floor_ratio(SMALL_FILES)),
    Target(f"{SMALL_FILES} MIS peak RSS", 100.0, "MB", True, _peak_rss(SMALL_FILES)),
    *(
        Target(
            f"busy p99 during {STAGE_LABELS[stage]}, {profile}",
            BUSY_P99_MS,
            "ms",
            True,
            _busy(profile, stage),
        )
        for profile in BUSY_PROFILES
        for stage in STAGES
    ),
    Target(
        "busy p99 under a burst of 200 (median of bursts)",
        BUSY_BURST_P99_MS,
        "ms",
        True,
        _path("busy_burst", "mis", "median_p99_ms"),
    ),
    Target(
        "MAP done -> first byte, process backend (median)",
        FIRST_BYTE_MS,
        "ms",
        True,
        _path("first_byte", "process", "median_ms"),
    ),
]


def check(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target with what this run measured for it (None: not measured) and whether met."""
    checked = []
    for target in TARGETS:
        value = target.measure(results)
        met = None
        if value is not None:
            met = value < target.limit if target.below else value <= target.limit
        relation = "<" if target.below else "<="
        checked.append(
            {
                "target": target.name,
                "limit": f"{relation} {target.limit:g} {target.unit}",
                "measured": value,
                "unit": target.unit,
                "met": met,
            }
        )
    return checked


def missed(checked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in checked if c["met"] is False]
