"""What accel knows about the host it runs on: CPU model, physical cores and the ISA
features lowering decisions depend on (:class:`HostProfile`), from one read of
``/proc/cpuinfo`` (where there is one). ``accel info`` prints it."""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass

from accel import env


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


ISA_FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
"""The x86 features lowering decisions read (names as /proc/cpuinfo spells them)."""


@dataclass(frozen=True)
class HostProfile:
    """What lowering needs to know about the CPU it will run on."""

    cpu: str
    """Model name."""
    cores: int
    """Physical cores this process may use."""
    machine: str
    """``x86_64``, ``aarch64``..."""
    isa: frozenset[str]
    """Detected (or forced) features of :data:`ISA_FEATURES`."""
    forced: bool = False
    """The features come from ``ACCEL_HOST_ISA``, not from the CPU."""

    @property
    def x86(self) -> bool:
        """An x86-64 CPU."""
        return self.machine in ("x86_64", "AMD64", "i686", "x86")

    @property
    def vnni(self) -> bool:
        """Integer dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX): an int8 x int8
        product sum accumulates straight into int32."""
        return bool(self.isa & {"avx512_vnni", "avx_vnni", "amx_int8"})

    @property
    def u8s8_exact(self) -> bool:
        """Whether onnxruntime's u8 x s8 integer matmul is exact here. Without VNNI, x86 MLAS
        uses ``vpmaddubsw``, which sums pairs of u8*s8 products in saturating int16: wrong
        for large activations and weights (the u8 x u8 kernel widens to int16 first)."""
        return self.vnni or not self.x86

    @property
    def bf16(self) -> bool:
        """Native bf16 matmul (AVX-512 BF16 or AMX); elsewhere bf16 is emulated."""
        return bool(self.isa & {"avx512_bf16", "amx_bf16"})

    def describe(self) -> str:
        """One line: ``AMD EPYC, 2 cores, x86_64: AVX2 AVX-512 VNNI BF16``."""
        names = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "VNNI",
                 "avx_vnni": "AVX-VNNI", "avx512_bf16": "BF16", "amx_tile": "AMX"}
        feats = " ".join(v for k, v in names.items() if k in self.isa) or "no AVX2"
        forced = " (forced by ACCEL_HOST_ISA)" if self.forced else ""
        return f"{self.cpu}, {self.cores} cores, {self.machine}: {feats}{forced}"


def _flags() -> frozenset[str]:
    flags: set[str] = set()
    for k, v in _cpuinfo():
        if k in ("flags", "Features"):
            flags.update(v.split())
            break
    return frozenset(f for f in flags if f in ISA_FEATURES)


def host() -> HostProfile:
    """This host's profile. ``ACCEL_HOST_ISA`` (comma-separated features, e.g. ``avx2,fma``)
    replaces the detected ISA: to check another host's lowering decisions on this one."""
    forced = env.host_isa()
    return _profile(forced)


@functools.cache
def _profile(forced: frozenset[str] | None) -> HostProfile:
    return HostProfile(cpu_model(), physical_cores(), platform.machine(),
                       forced if forced is not None else _flags(), forced is not None)


def trim_memory() -> None:
    """Return freed heap memory to the OS (glibc's ``malloc_trim``): a runtime session that
    was built, measured and dropped leaves its weights' pages in the allocator otherwise."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def header() -> str:
    """One line naming the host and versions, for the top of every benchmark's output: a
    figure holds only for the ISA it was taken on."""
    import torch

    return (f"host: {host().describe()}; torch {torch.__version__}, "
            f"python {platform.python_version()}")
