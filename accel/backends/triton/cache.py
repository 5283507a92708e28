"""On-disk kernel cache: generated source -> importable module file.

Triton's JIT reads a kernel's source with ``inspect``, so each kernel lives in a real file:
``<cache>/<key>/<name>.py`` with a ``.sha256`` checksum next to it. The key hashes the
source, the device name and the torch and triton versions. A file whose checksum does not
match (a torn or corrupted write) is rebuilt. Writes go to a temporary file first and are
published with ``os.replace``, so concurrent threads and processes never see partial files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from types import ModuleType

import torch
import triton
from triton import knobs

from accel import env
from accel.errors import AccelError

_LOCK = threading.Lock()
_MODULES: dict[tuple[Path, bool], ModuleType] = {}


def device_name(interpret: bool) -> str:
    """Name of the device kernels are built for (part of the cache key)."""
    if interpret or not torch.cuda.is_available():
        return "triton-interpreter"
    return torch.cuda.get_device_name()


def cache_key(source: str, device: str) -> str:
    """Hash of the source, device and torch/triton versions."""
    h = hashlib.sha256()
    for part in (source, device, torch.__version__, triton.__version__):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def kernel_path(name: str, source: str, *, interpret: bool = False) -> Path:
    """Path of the verified module file for ``source``, writing it when missing or corrupt."""
    key = cache_key(source, device_name(interpret))
    directory = env.cache_dir() / "triton" / key
    path = directory / f"{name}.py"
    check = directory / f"{name}.py.sha256"
    want = _digest(source)
    try:
        if path.read_text() == source and check.read_text().strip() == want:
            return path
    except OSError:
        pass
    try:
        return _write_entry(directory, name, source, want)
    except OSError as e:
        fallback = _fallback_dir() / "triton" / key
        warnings.warn(f"accel: kernel cache {env.cache_dir()} is not writable ({e}); using "
                      f"{fallback} for this process. Set ACCEL_CACHE_DIR to a writable "
                      "directory to keep kernels across runs", stacklevel=3)
        try:
            return _write_entry(fallback, name, source, want)
        except OSError as e2:
            raise AccelError(f"cannot write Triton kernel {name!r}: the kernel cache "
                             f"{env.cache_dir()} and the fallback {fallback} are not writable "
                             f"({e2}); set ACCEL_CACHE_DIR to a writable directory") from e2


def _write_entry(directory: Path, name: str, source: str, digest: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    _atomic_write(path, source)
    _atomic_write(directory / f"{name}.py.sha256", digest + "\n")
    return path


_FALLBACK: list[Path] = []


def _fallback_dir() -> Path:
    """A per-process temporary cache, used when the configured one is not writable."""
    with _LOCK:
        if not _FALLBACK:
            _FALLBACK.append(Path(tempfile.mkdtemp(prefix="accel-cache-")))
        return _FALLBACK[0]


def load_kernel(name: str, source: str, *, interpret: bool = False, jit: bool = False
                ) -> object:
    """The ``triton.jit`` kernel ``name`` defined by ``source``, via the on-disk cache.

    ``jit``: decorate it as a compiled (not interpreted) kernel even when this process runs
    Triton's interpreter, for ahead-of-time compilation.
    """
    path = kernel_path(name, source, interpret=interpret)
    with _LOCK:
        module = _MODULES.get((path, jit))
        if module is None:
            mod_name = f"accel_kernels.{path.parent.name}.{name}" + ("_jit" if jit else "")
            spec = importlib.util.spec_from_file_location(mod_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            if jit:
                with knobs.runtime.scope():
                    knobs.runtime.interpret = False
                    spec.loader.exec_module(module)
            else:
                spec.loader.exec_module(module)
            _MODULES[(path, jit)] = module
    return getattr(module, name)


def dump_source(dump_dir: str | os.PathLike, name: str, source: str) -> Path:
    """Write a kernel's source to ``dump_dir/kernels/<name>.py``; the path."""
    out = Path(dump_dir) / "kernels"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.py"
    _atomic_write(path, source)
    return path
