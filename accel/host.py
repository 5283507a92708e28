"""What accel knows about the host it runs on: CPU model and physical cores, from one read
of ``/proc/cpuinfo`` (where there is one)."""

from __future__ import annotations

import functools
import os
import platform


@functools.cache
def _cpuinfo() -> tuple[tuple[str, str], ...]:
    """``(key, value)`` lines of /proc/cpuinfo, empty where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            return tuple(tuple(s.strip() for s in line.partition(":")[::2])  # type: ignore[misc]
                         for line in f if ":" in line)
    except OSError:
        return ()


def cpu_model() -> str:
    """The CPU's model name (``AMD EPYC ...``)."""
    return next((v for k, v in _cpuinfo() if k == "model name"),
                platform.processor() or platform.machine())


def physical_cores() -> int:
    """Physical CPU cores this process may run on (hyper-threads counted once)."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cores: set[tuple[str, str]] = set()
    proc, phys = None, "0"
    for key, val in _cpuinfo():
        if key == "processor":
            proc, phys = int(val), "0"
        elif key == "physical id":
            phys = val
        elif key == "core id" and proc is not None and (allowed is None or proc in allowed):
            cores.add((phys, val))
    if cores:
        return len(cores)
    return len(allowed) if allowed else (os.cpu_count() or 1)
