"""The environment variables accel reads, parsed in one place.

| variable | meaning |
|---|---|
| ``ACCEL_DEBUG`` | verify the graph after every pass (flag) |
| ``ACCEL_DUMP`` | directory to write the graph after every pass, and generated kernels |
| ``ACCEL_CACHE_DIR`` | cache root: kernels and compiled models (default ``~/.cache/accel``) |
| ``ACCEL_COMPILE_CACHE`` | keep compiled models across processes (flag, default on) |
| ``ACCEL_PROGRESS`` | progress bars for long work on a terminal (flag, default on) |
| ``TRITON_INTERPRET`` | Triton runs kernels in its CPU interpreter (flag; read by Triton too) |
| ``ACCEL_HOST_ISA`` | replace the detected CPU features (``avx2,fma``: an AVX2 host's choices) |

Flags accept ``1/0``, ``true/false``, ``yes/no`` and ``on/off`` in any case (no surrounding
spaces: Triton would read ``" 1"`` as off); unset or empty means the default. Anything
else raises :class:`~accel.errors.AccelValueError` naming the variable, rather than being
read one way here and another way elsewhere. Values are read
at each call, so a test or a user may change them at run time.
"""

from __future__ import annotations

import os
from pathlib import Path

from accel.errors import AccelValueError

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def flag(name: str, default: bool = False) -> bool:
    """The boolean environment variable ``name``."""
    raw = os.environ.get(name, "")
    if not raw:
        return default
    low = raw.lower()  # no strip: Triton reads " 1" as off, so accel must not read it as on
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise AccelValueError(f"environment variable {name}={raw!r} is not a flag: use 1/0, "
                          "true/false, yes/no or on/off (or unset it)")


def path(name: str) -> Path | None:
    """The path in environment variable ``name``, or ``None`` when unset or empty."""
    raw = os.environ.get(name, "").strip()
    return Path(raw).expanduser() if raw else None


def debug() -> bool:
    """``ACCEL_DEBUG``: verify the graph after every pass."""
    return flag("ACCEL_DEBUG")


def dump_dir() -> Path | None:
    """``ACCEL_DUMP``: where to write graphs after each pass and generated kernels."""
    return path("ACCEL_DUMP")


def cache_dir() -> Path:
    """``ACCEL_CACHE_DIR``, or ``~/.cache/accel``."""
    return path("ACCEL_CACHE_DIR") or Path.home() / ".cache" / "accel"


def compile_cache() -> bool:
    """``ACCEL_COMPILE_CACHE``: keep compiled models in the cache across processes."""
    return flag("ACCEL_COMPILE_CACHE", default=True)


def progress() -> bool:
    """``ACCEL_PROGRESS``: show progress bars (only ever on a terminal)."""
    return flag("ACCEL_PROGRESS", default=True)


def triton_interpret() -> bool:
    """``TRITON_INTERPRET``: Triton runs kernels on the CPU (tests without a GPU).

    Triton reads the variable itself, accepting ``1/true/yes/on``; this parse agrees with it
    for every value it accepts and rejects the values Triton would silently read as off.
    """
    return flag("TRITON_INTERPRET")


def host_isa() -> frozenset[str] | None:
    """``ACCEL_HOST_ISA``: comma-separated CPU features that replace the detected ones
    (``none`` for a plain x86-64), or ``None`` when unset."""
    from accel.host import ISA_FEATURES

    raw = os.environ.get("ACCEL_HOST_ISA", "").strip()
    if not raw:
        return None
    if raw.lower() == "none":
        return frozenset()
    feats = frozenset(f.strip().lower() for f in raw.split(",") if f.strip())
    unknown = sorted(feats - set(ISA_FEATURES))
    if unknown:
        raise AccelValueError(f"environment variable ACCEL_HOST_ISA={raw!r}: unknown feature(s) "
                              f"{', '.join(unknown)}; known: {', '.join(ISA_FEATURES)} (or none)")
    return feats
