"""The persistent compile cache: a second process compiles the same model in a fraction of
the first one's time.

An entry is one specialization of one model: the optimized graph, what the report said
about its compile, and what its executor needs to start without lowering again (the ONNX
model of an onnxruntime or OpenVINO executor; the graph itself for aten). It lives in
``<ACCEL_CACHE_DIR>/compiled/<key>/`` next to the kernel cache. The key hashes everything
the result depends on:

- the model: every submodule's class and the source file that defines it, the plain
  attributes of every submodule (Hugging Face configs included), every parameter's and
  buffer's bytes;
- the call: example input shapes and dtypes, ``dynamic_shapes``, the pipeline, the target
  and its options, the calibration data's bytes;
- the tools: accel, torch, onnx, onnxruntime and OpenVINO versions, and the host profile
  (the lowering depends on the ISA; ``ACCEL_HOST_ISA`` included).

A model the key cannot describe faithfully (hooks, a plain function without source) is
not cached. Entries are written to a temporary directory and published with one rename, so
concurrent processes never see a partial entry; a file whose checksum does not match (a
torn or corrupted entry) is ignored and the entry rebuilt. ``ACCEL_COMPILE_CACHE=0`` turns
the cache off.
"""

from __future__ import annotations

import copyreg
import hashlib
import inspect
import io
import json
import os
import pickle
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from accel import env
from accel.host import physical_cores

FORMAT = 2
"""Bumped when an entry's layout changes (old entries are then never read)."""

PARALLEL_HASH_BYTES = 16 << 20
"""Weights larger than this are hashed on several threads."""
BACKGROUND_CHECK_BYTES = 8 << 20
"""Payload files larger than this are checked while the executor starts from them."""

_SIMPLE = (int, float, str, bool, type(None))


def enabled() -> bool:
    """``ACCEL_COMPILE_CACHE`` (default on)."""
    return env.compile_cache()


def root() -> Path:
    """Where compiled entries live: ``<ACCEL_CACHE_DIR>/compiled``."""
    return env.cache_dir() / "compiled"


# ---- keys ---------------------------------------------------------------------------------
class _Hasher:
    def __init__(self) -> None:
        self._h = hashlib.blake2b(digest_size=20)

    def add(self, *parts: Any) -> _Hasher:
        for p in parts:
            if isinstance(p, torch.Tensor):
                self.tensor(p)
            else:
                data = p if isinstance(p, bytes) else repr(p).encode()
                self._h.update(len(data).to_bytes(8, "little"))
                self._h.update(data)
        return self

    def tensor(self, t: torch.Tensor) -> None:
        t = t.detach()
        self.add(str(t.dtype), tuple(t.shape), t.device.type)
        if t.device.type == "meta":
            return
        flat = t.cpu().contiguous().reshape(-1)
        if flat.numel():
            self._h.update(memoryview(flat.view(torch.uint8).numpy()))

    def hexdigest(self) -> str:
        return self._h.hexdigest()


_FILE_HASHES: dict[str, str] = {}


def _source_hash(cls: type) -> str | None:
    """Hash of the file defining ``cls`` (None when there is no source to read)."""
    try:
        path = inspect.getsourcefile(cls)
    except (TypeError, OSError):
        return None
    if not path:
        return None
    if path not in _FILE_HASHES:
        try:
            _FILE_HASHES[path] = hashlib.blake2b(Path(path).read_bytes(),
                                                 digest_size=16).hexdigest()
        except OSError:
            return None
    return _FILE_HASHES[path]


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` as plain data if it is made of plain data (configs through ``to_dict``),
    else a marker: unknown objects are keyed by type only."""
    if isinstance(value, _SIMPLE) or isinstance(value, torch.dtype | torch.device):
        return value if not isinstance(value, torch.dtype | torch.device) else str(value)
    if depth > 4:
        return f"<{type(value).__name__}>"
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in sorted(value.items(), key=str)}
    code = getattr(value, "__code__", None)
    if code is not None:  # a function: keyed by what it does, not by its address
        return f"<fn {value.__qualname__} {_code_hash(code)} {_plain(code.co_consts, depth + 1)}>"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"<{getattr(value, '__module__', '')}.{value.__qualname__}>"
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        try:
            return _plain(to_dict(), depth + 1)
        except Exception:  # noqa: BLE001 - a config that cannot say itself: keyed by type
            pass
    return f"<{type(value).__qualname__}>"


def _code_hash(code: Any) -> str:
    """What a code object does: its bytecode, the names it reads (``torch.all`` and
    ``torch.any`` differ only there) and, recursively, its nested functions."""
    h = hashlib.blake2b(code.co_code, digest_size=8)
    h.update(repr(code.co_names).encode())
    for c in code.co_consts:
        h.update(_code_hash(c).encode() if hasattr(c, "co_code") else repr(c).encode())
    return h.hexdigest()


def _globals_read(fn: Any) -> dict[str, Any]:
    """The module-level values ``fn`` reads (a flag, a helper function, a config), as plain
    data: a forward that reads a global computes something else when the global changes,
    though its class and source file did not."""
    code, env = getattr(fn, "__code__", None), getattr(fn, "__globals__", None)
    if code is None or env is None:
        return {}
    out = {}
    for name in code.co_names:
        if name in env and not inspect.ismodule(env[name]):
            out[name] = _plain(env[name])
    return out


_MODULE_STATE = {"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set",
                 "training"}


def model_fingerprint(model: Any) -> str | None:
    """A hash of what ``model`` computes, or ``None`` when it cannot be described safely
    (hooks, classes without source): such models are not cached."""
    if not isinstance(model, torch.nn.Module):
        return None
    h = _Hasher()
    for name, m in model.named_modules():
        cls = type(m)
        src = _source_hash(cls)
        if src is None:
            return None
        if any(getattr(m, k, None) for k in ("_forward_hooks", "_forward_pre_hooks",
                                              "_state_dict_hooks")):
            return None
        attrs = {k: _plain(v) for k, v in vars(m).items()
                 if k not in _MODULE_STATE and not k.startswith("_")}
        h.add(name, cls.__module__, cls.__qualname__, src, m.training,
              json.dumps(attrs, sort_keys=True, default=str),
              json.dumps(_globals_read(cls.forward), sort_keys=True, default=str))
    tensors = [*model.named_parameters(), *model.named_buffers()]
    for (name, t), digest in zip(tensors, _tensor_digests([t for _, t in tensors]),
                                 strict=True):
        h.add(name, str(t.dtype), tuple(t.shape), digest)
    return h.hexdigest()


def _tensor_digests(tensors: list[torch.Tensor]) -> list[bytes]:
    """Each tensor's bytes hashed, spread over the host's cores (hashlib releases the GIL):
    a model's weights are hundreds of MB, and this runs on every cached compile."""
    def one(t: torch.Tensor) -> bytes:
        h = _Hasher()
        h.tensor(t)
        return h._h.digest()

    big = sum(t.numel() * t.element_size() for t in tensors) > PARALLEL_HASH_BYTES
    workers = min(len(tensors), physical_cores()) if big else 1
    if workers <= 1:
        return [one(t) for t in tensors]
    with ThreadPoolExecutor(workers, thread_name_prefix="accel-hash") as pool:
        return list(pool.map(one, tensors))


def batches_fingerprint(batches: Iterable[Sequence[torch.Tensor]] | None) -> str:
    """A hash of calibration data (every tensor's bytes)."""
    h = _Hasher()
    for batch in batches or ():
        h.add(len(batch))
        for t in batch:
            h.tensor(t)
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Versions of everything that shapes a compiled result."""
    import onnx
    import onnxruntime

    import accel
    out = {"accel": accel.__version__, "torch": torch.__version__, "onnx": onnx.__version__,
           "onnxruntime": onnxruntime.__version__, "format": str(FORMAT)}
    try:
        import openvino
        out["openvino"] = openvino.__version__
    except ImportError:
        pass
    return out


def make_key(*parts: Any) -> str:
    """The entry key for ``parts`` (plain data and tensors)."""
    return _Hasher().add(*parts).hexdigest()


# ---- entries ------------------------------------------------------------------------------
def _readonly(d: dict) -> MappingProxyType:
    return MappingProxyType(d)


def _dumps(obj: Any) -> bytes:
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=5)
    p.dispatch_table = copyreg.dispatch_table.copy()  # type: ignore[attr-defined]
    p.dispatch_table[MappingProxyType] = lambda m: (_readonly, (dict(m),))  # type: ignore
    p.dump(obj)
    return buf.getvalue()


@dataclass
class Entry:
    """One cached specialization."""

    graph: Any
    """The optimized graph (its constants dropped when the payload holds the weights)."""
    executor: str
    """Which executor ran it: ``aten``, ``onnxruntime``, ``openvino``."""
    report: dict[str, Any] = field(default_factory=dict)
    """What the first compile's report said (accuracy, passes, lowering notes, stages)."""
    payload_file: Path | None = None
    """What the executor starts from (``model.onnx`` in the entry, its weights in
    ``model.onnx.data``), ``None`` for aten."""
    _check: Future | None = field(default=None, repr=False, compare=False)
    _dir: Path | None = field(default=None, repr=False, compare=False)

    def verified(self) -> bool:
        """Whether the payload's large files hash as stored (waits for the background
        check :func:`load` started); a corrupt entry is removed, with a warning."""
        if self._check is None:
            return True
        ok = self._check.result()
        self._check = None
        if not ok and self._dir is not None:
            _corrupt(self._dir)
        return ok

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_check": None, "_dir": None}


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def _corrupt(d: Path) -> None:
    warnings.warn(f"accel: compile cache entry {d} is corrupt; compiling again", stacklevel=4)
    shutil.rmtree(d, ignore_errors=True)


def load(key: str) -> Entry | None:
    """The entry for ``key``, or ``None`` (missing, from another format, or corrupt).

    The entry and the small files are checked here; the payload's weights (hundreds of MB)
    are checked in the background while the executor starts from them: call
    :meth:`Entry.verified` before using what was built (a corrupt entry is then removed)."""
    d = root() / key
    try:
        meta = (d / "entry.pkl").read_bytes()
        sums = json.loads((d / "sha256.json").read_text())
        present = {p.name: p for p in sorted(d.iterdir())
                   if p.name not in ("entry.pkl", "sha256.json")}
    except (OSError, ValueError):
        return None
    expected = sums.get("files", {})
    if sums.get("entry") != hashlib.sha256(meta).hexdigest() or set(present) != set(expected):
        _corrupt(d)
        return None
    large = {n for n, p in present.items() if p.stat().st_size > BACKGROUND_CHECK_BYTES}
    try:
        if any(_file_digest(present[n]) != expected[n] for n in present if n not in large):
            _corrupt(d)
            return None
    except OSError:
        return None
    try:
        with warnings.catch_warnings():  # torch's pytree specs warn on unpickling
            warnings.simplefilter("ignore", FutureWarning)
            entry = pickle.loads(meta)
    except Exception:  # noqa: BLE001 - an unreadable entry is rebuilt, whatever broke it
        shutil.rmtree(d, ignore_errors=True)
        return None
    entry.payload_file = d / "model.onnx" if "model.onnx" in present else None
    if large:
        def check() -> bool:
            try:
                return all(_file_digest(present[n]) == expected[n] for n in sorted(large))
            except OSError:
                return False
        pool = ThreadPoolExecutor(1, thread_name_prefix="accel-cache-check")
        entry._check = pool.submit(check)
        pool.shutdown(wait=False)
    entry._dir = d
    return entry


def store(key: str, entry: Entry, payload: Path | None = None) -> Path | None:
    """Write ``entry`` (and a copy of the ``payload`` ONNX file and its ``.data`` file)
    under ``key`` atomically;
    ``None`` (and a warning) if the cache directory is not writable. An existing entry is
    kept (another process won the race)."""
    d = root() / key
    entry.payload_file = None
    try:
        meta = _dumps(entry)
    except Exception:  # noqa: BLE001 - a graph holding an unpicklable value is not cached
        return None
    try:
        root().mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root(), prefix=f".{key}."))
        try:
            (tmp / "entry.pkl").write_bytes(meta)
            sums: dict[str, Any] = {"entry": hashlib.sha256(meta).hexdigest(), "files": {}}
            if payload is not None:  # the model and its external data, names kept
                for src, name in ((payload, "model.onnx"),
                                  (payload.with_name(payload.name + ".data"),
                                   "model.onnx.data")):
                    if src.exists():
                        shutil.copyfile(src, tmp / name)
                        sums["files"][name] = _file_digest(tmp / name)
            (tmp / "sha256.json").write_text(json.dumps(sums))
            try:
                os.replace(tmp, d)
            except OSError:  # the entry exists already (a concurrent compile): keep it
                if not (d / "sha256.json").exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as e:
        warnings.warn(f"accel: compile cache {root()} is not writable ({e}); compiled "
                      "models are not kept across processes. Set ACCEL_CACHE_DIR to a "
                      "writable directory", stacklevel=3)
        return None
    return d


def clear() -> int:
    """Remove every entry; returns how many there were."""
    if not root().exists():
        return 0
    n = sum(1 for p in root().iterdir() if p.is_dir() and not p.name.startswith("."))
    shutil.rmtree(root(), ignore_errors=True)
    return n
