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
                   pause_s: float = 0.0, best_of: int = 1, alternate: bool = False
                   ) -> dict[str, list[float]]:
    """Per name, the wall times in ms of ``rounds`` rounds that each call every function once,
    in turn, with autograd off — so drift of a shared machine hits them all alike. With
    ``pause_s``, sleeps that long before each function's turn (lets another runtime's
    spinning worker threads go idle). With ``best_of`` > 1, a turn is one untimed call and
    the fastest of ``best_of`` timed ones (one call straight after another runtime ran
    measures that runtime's threads and a cold cache as much as the model). With
    ``alternate``, every other round runs the functions in reverse order."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    with torch.no_grad():
        for r in range(rounds):
            for name in names[::-1] if alternate and r % 2 else names:
                fn = fns[name]
                if pause_s:
                    time.sleep(pause_s)
                if best_of > 1:
                    fn()
                best = float("inf")
                for _ in range(best_of):
                    t0 = time.perf_counter()
                    fn()
                    best = min(best, time.perf_counter() - t0)
                times[name].append(best * 1e3)
    return times
