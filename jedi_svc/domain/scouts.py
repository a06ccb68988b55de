"""From the scouts' measurements to the other jobs' requests. No I/O.

The memory request is the 95th percentile (nearest rank) of the successful scouts' peak RSS
times 1.5, and at least MIN_MEMORY_MB (short scouts may end before the pilot samples them);
the walltime request is the 95th percentile of their running time times 2, and at least
MIN_WALLTIME_SECONDS."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "MEMORY_MARGIN", "MIN_MEMORY_MB", "MIN_WALLTIME_SECONDS", "PERCENTILE", "WALLTIME_MARGIN", "Measurement",
    "ScoutResult", "evaluate", "percentile",
]

MEMORY_MARGIN = 1.5
WALLTIME_MARGIN = 2.0
MIN_MEMORY_MB = 256
MIN_WALLTIME_SECONDS = 300
PERCENTILE = 95


@dataclass(frozen=True)
class Measurement:
    max_rss_mb: int
    walltime_seconds: float
    cpu_seconds: float


@dataclass(frozen=True)
class ScoutResult:
    memory_mb: int
    walltime_seconds: int
    cpu_seconds: float
    request_memory_mb: int
    request_walltime_seconds: int


def percentile(values: list[float], p: float = PERCENTILE) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def evaluate(measurements: list[Measurement]) -> ScoutResult:
    memory = percentile([m.max_rss_mb for m in measurements])
    walltime = percentile([m.walltime_seconds for m in measurements])
    cpu = percentile([m.cpu_seconds for m in measurements])
    return ScoutResult(
        memory_mb=math.ceil(memory),
        walltime_seconds=math.ceil(walltime),
        cpu_seconds=round(cpu, 3),
        request_memory_mb=max(MIN_MEMORY_MB, math.ceil(memory * MEMORY_MARGIN)),
        request_walltime_seconds=max(MIN_WALLTIME_SECONDS, math.ceil(walltime * WALLTIME_MARGIN)),
    )
