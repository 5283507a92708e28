"""Wall-clock timing shared by the CLI, the CPU target's executor choice and the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import torch


def _call_ms(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Wall times in ms of ``repeats`` calls of ``fn()`` after ``warmup`` untimed ones, with
    autograd off."""
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``repeats`` calls of ``fn()`` in milliseconds, after ``warmup``
    untimed calls, with autograd off."""
    return statistics.median(_call_ms(fn, repeats, warmup))


def best_ms(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Fastest of ``repeats`` calls of ``fn()`` in milliseconds, after ``warmup`` untimed
    calls, with autograd off: on a shared machine a transient slowdown only ever adds time,
    so the minimum of a few calls ranks two runtimes more reliably than their median."""
    return min(_call_ms(fn, repeats, warmup))


def interleaved_ms(fns: Mapping[str, Callable[[], object]], rounds: int,
                   pause_s: float = 0.0) -> dict[str, list[float]]:
    """Per name, the wall times in ms of ``rounds`` rounds that each call every function once,
    in turn, with autograd off — so drift of a shared machine hits them all alike. With
    ``pause_s``, sleeps that long before each call (lets another runtime's spinning worker
    threads go idle)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.no_grad():
        for _ in range(rounds):
            for name, fn in fns.items():
                if pause_s:
                    time.sleep(pause_s)
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1e3)
    return times
