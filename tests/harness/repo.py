"""The repository's root: what tests read (sources, docs, the chart) and where `mis` runs."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).parents[2]
