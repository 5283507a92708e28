"""Ahead-of-time compilation of every Triton kernel a model would launch, for a named GPU,
on a machine without one.

The model is lowered for the ``cuda`` target as on that GPU (the same partition, templates
and configs) and its schedule is run once with every launch recorded, not run
(:mod:`accel.backends.triton.record`). Each recorded launch is compiled for the
architecture with Triton's own binder and compiler (``triton.compile(...,
target=GPUTarget("cuda", 90, 32))``), once per autotune config the autotuner would try,
and ptxas's verbose output and the PTX give what a GPU compiler engineer checks before
putting a kernel on hardware: registers, spill stores, stack frame, shared memory, and
the tensor-core instructions used (``wgmma`` on Hopper, ``mma`` on Ampere). Identical
kernels (same source up to the name, same specialization and config) compile once; results
are kept in the compile cache (``<cache>/aot``), so a rerun costs only the recording.

:func:`roofline` turns the IR's FLOPs and bytes into a time estimate for a named device
(data-sheet peaks in :data:`DEVICES`): an estimate, not a measurement.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import inspect
import io
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import triton
from triton import knobs

from accel import env
from accel.backends.triton.cache import kernel_path, load_kernel
from accel.backends.triton.kernel import Device, KernelGroup
from accel.backends.triton.record import LaunchRecord, Recorder, TensorArg
from accel.errors import AccelValueError
from accel.ir.graph import Graph, Node

ARCHS: dict[str, tuple[int, int]] = {"sm_80": (8, 0), "sm_90a": (9, 0)}
"""Architectures kernels are compiled for, by name: compute capability."""

SHARED_LIMIT: dict[str, int] = {"sm_80": 166912, "sm_90a": 232448}
"""Most shared memory one block may use (bytes): 163 KB on A100, 227 KB on H100/H200
(CUDA C Programming Guide, compute capabilities table)."""

FORMAT = 2
"""Version of the cached compile results (bump when :class:`KernelInfo` changes)."""


@dataclass(frozen=True)
class DevicePeaks:
    """Data-sheet peaks of one GPU (dense, no sparsity)."""

    name: str
    tensor_fp16: float
    """FP16/BF16 tensor-core FLOP/s."""
    tensor_tf32: float
    """TF32 tensor-core FLOP/s."""
    fp32: float
    """FP32 CUDA-core FLOP/s."""
    int8: float
    """INT8 tensor-core OP/s."""
    bandwidth: float
    """HBM bytes/s."""
    source: str


DEVICES: dict[str, DevicePeaks] = {
    "H100": DevicePeaks("H100 SXM5 80GB", 989.4e12, 494.7e12, 66.9e12, 1978.9e12, 3.35e12,
                        "NVIDIA H100 Tensor Core GPU datasheet (SXM5; sparsity figures "
                        "halved)"),
    "H200": DevicePeaks("H200 SXM 141GB", 989.4e12, 494.7e12, 66.9e12, 1978.9e12, 4.8e12,
                        "NVIDIA H200 Tensor Core GPU datasheet (SXM; sparsity figures "
                        "halved)"),
    "A100": DevicePeaks("A100 SXM4 80GB", 312e12, 156e12, 19.5e12, 624e12, 2.039e12,
                        "NVIDIA A100 Tensor Core GPU datasheet (SXM4 80GB; sparsity "
                        "figures halved)"),
}
"""Devices :func:`roofline` knows, by short name."""


@dataclass(frozen=True)
class BuildResult:
    """What compiling one kernel for one architecture with one config gives (ptxas's figures,
    or the compiler's first error)."""

    registers: int
    """Registers per thread."""
    spill_bytes: int
    """ptxas spill stores (bytes)."""
    spill_loads: int
    stack_bytes: int
    """Stack frame per thread (bytes)."""
    shared_bytes: int
    """Dynamic shared memory per block (bytes)."""
    tensor_cores: str
    """Tensor-core instruction family in the PTX: ``wgmma``, ``mma`` or ``none``."""
    error: str | None
    """The first compiler error, when the kernel does not compile."""


@dataclass(frozen=True, kw_only=True)
class KernelInfo(BuildResult):
    """One kernel compiled for one architecture with one config: its build result and where
    it sits in the model."""

    name: str
    """Kernel name (the template's ``<kind>_<anchor node>``, or the hand-written kernel's)."""
    kind: str
    """Kernel kind (``matmul``, ``attention``, ``reduction``, ``pointwise``, ``token``...)."""
    group: str
    """The kernel group (its anchor node's name)."""
    arch: str
    config: str
    """Block sizes, ``num_warps`` and ``num_stages``."""
    flops: int
    """FLOPs of the group (from the IR)."""
    bytes_moved: int
    """Bytes the group reads and writes from memory (its external inputs and outputs)."""
    programs: int
    """Programs (CTAs) in the launch grid with this config."""
    dtype: str
    """Dtype of the group's anchor input."""
    source: str | None
    """Path of the kernel's Triton source."""
    instances: int = 1
    """Launches of this kernel with this config in one run of the model (identical layers
    share one compile)."""
    notes: tuple[str, ...] = ()
    """The template's notes on what it gave up for this problem (32-row tiles...)."""
    seconds: float = 0.0
    """Compile time (0 for a cached result)."""
    cached: bool = False

    @property
    def ok(self) -> bool:
        """Compiled, no spill, shared memory within the architecture's limit."""
        return (self.error is None and self.spill_bytes == 0
                and self.shared_bytes <= SHARED_LIMIT.get(self.arch, 1 << 62))

    @property
    def matmul_class(self) -> bool:
        """A kernel whose inner loop is ``tl.dot`` (where tensor cores are expected)."""
        return self.kind in ("matmul", "attention", "int8_linear", "weight_only")

    def problems(self) -> list[str]:
        """What is wrong with this kernel, one phrase each (empty when nothing is)."""
        out = []
        if self.error is not None:
            out.append(f"does not compile: {self.error}")
            return out
        if self.spill_bytes:
            out.append(f"spills {self.spill_bytes} B (stores), {self.spill_loads} B (loads)")
        if self.shared_bytes > SHARED_LIMIT.get(self.arch, 1 << 62):
            out.append(f"shared memory {self.shared_bytes} B over the {self.arch} limit "
                       f"{SHARED_LIMIT[self.arch]} B")
        return out


def record(graph: Graph, inputs: Sequence[torch.Tensor], arch: str,
           fp32_precision: str | None = None) -> list[LaunchRecord]:
    """The launches one run of ``graph`` on ``inputs`` makes when lowered for ``arch``
    (float32 dots as the cuda target would make them, or as ``fp32_precision`` says)."""
    from accel.backends.triton.lower import lower_triton
    from accel.targets.cuda import fp32_precision as precision

    if arch not in ARCHS:
        raise AccelValueError(f"arch {arch!r}: ahead-of-time compilation supports "
                              f"{', '.join(ARCHS)}")
    recorder = Recorder()
    device = Device(ARCHS[arch], record=True, fp32_precision=precision(fp32_precision))
    executor = lower_triton(graph, device, recorder=recorder)
    with torch.no_grad():
        executor.run(list(inputs))
    return recorder.launches


# ---- compiling one launch ----------------------------------------------------------------


_JIT: dict[int, Any] = {}


def _jit_function(kernel: Any) -> Any:
    """The compiled-mode ``JITFunction`` behind a launched kernel object (an autotuner, an
    interpreted function in a process running Triton's interpreter, or the function)."""
    fn = getattr(kernel, "fn", kernel) if hasattr(kernel, "configs") else kernel
    if isinstance(fn, triton.runtime.JITFunction):
        return fn
    got = _JIT.get(id(fn))
    if got is None:  # an InterpretedFunction: the same Python function, compiled mode
        with knobs.runtime.scope():
            knobs.runtime.interpret = False
            got = triton.runtime.JITFunction(fn.fn, **fn.kwargs)
        _JIT[id(fn)] = got
    return got


def _configs(kernel: Any, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """The keyword arguments of each config the launch would try (one for a plain kernel)."""
    configs = getattr(kernel, "configs", None)
    if not configs:
        return [dict(kwargs)]
    return [{**kwargs, **c.all_kwargs()} for c in configs]


def _describe_config(kwargs: dict[str, Any], arg_names: Sequence[str]) -> str:
    blocks = [f"{k}={v}" for k, v in kwargs.items()
              if k in arg_names and (k.startswith("BLOCK") or k.startswith("GROUP"))]
    warps = kwargs.get("num_warps", 4)
    stages = kwargs.get("num_stages", 3)
    return " ".join([*blocks, f"warps={warps}", f"stages={stages}"])


_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS = re.compile(r"Used (\d+) registers")


def _parse_ptxas(log: str) -> tuple[int, int, int, int]:
    """(registers, spill stores, spill loads, stack frame) from ``ptxas -v``."""
    spill = _SPILL.search(log)
    regs = _REGS.search(log)
    stack, stores, loads = (int(g) for g in spill.groups()) if spill else (0, 0, 0)
    return (int(regs.group(1)) if regs else 0), stores, loads, stack


def tensor_core_family(ptx: str) -> str:
    """``wgmma`` (Hopper warpgroup MMA), ``mma`` (``mma.sync``) or ``none``."""
    if "wgmma.mma_async" in ptx:
        return "wgmma"
    if re.search(r"\bmma\.sync", ptx):
        return "mma"
    return "none"


def _first_error(e: BaseException) -> str:
    """The first error line of a compiler failure (ptxas's, or Triton's with its location)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and set(ln.strip()) != {"^"}]
    for ln in lines:
        if "error" in ln.lower() and "ptxas" in ln.lower():
            return ln[:300]
    if not lines:
        return type(e).__name__
    if lines[0].startswith("at ") and len(lines) > 1:  # Triton: "at 3:10:", source, message
        return f"{lines[-1]} ({lines[0].rstrip(':')}: {lines[1]})"[:300]
    return lines[0][:300]


_REGISTER = re.compile(r"\bv_\w+")


def canonical_source(jf: Any) -> str:
    """A kernel's source up to names: the kernel's own and its registers' (``v_<node>``)
    renamed in order of appearance, so identical layers compile once."""
    names: dict[str, str] = {}
    src = jf.src.replace(jf.__name__, "KERNEL")
    return _REGISTER.sub(lambda m: names.setdefault(m.group(0), f"v{len(names)}"), src)


@dataclass(frozen=True)
class _Job:
    """One compile, as sent to a worker process: picklable, the kernel named by its module
    source (templates) or its module and name (hand-written kernels)."""

    key: str
    name: str
    module_source: str | None
    module: str | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    arch: str
    dump: Path | None
    dump_name: str


def _specialize(jf: Any, args: Sequence[Any], kwargs: dict[str, Any], arch: str
                ) -> tuple[Any, Any, dict, dict, dict]:
    """Triton's own binder on stand-in arguments: (target, options, signature, constexprs,
    attrs) of the launch."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    major, minor = ARCHS[arch]
    target = GPUTarget("cuda", major * 10 + minor, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(jf.signature, jf.params, backend)
    stand_ins = [a.stand_in() if isinstance(a, TensorArg) else a for a in args]
    kw = {k: (v.stand_in() if isinstance(v, TensorArg) else v) for k, v in kwargs.items()}
    bound, specialization, options = binder(*stand_ins, **kw)
    options, signature, constexprs, attrs = jf._pack_args(backend, kw, bound, specialization,
                                                          options)
    return target, options, signature, constexprs, attrs


def _job(jf: Any, rec: LaunchRecord, kwargs: dict[str, Any], arch: str, dump: Path | None,
         dump_name: str) -> _Job:
    """The compile job of one launch with one config, keyed by what the compiler sees."""
    _, options, signature, constexprs, attrs = _specialize(jf, rec.args, kwargs, arch)
    key = hashlib.sha256("\0".join([
        str(FORMAT), canonical_source(jf), repr(sorted(signature.items())),
        repr(sorted(constexprs.items())), repr(sorted(attrs.items())),
        repr(sorted(options.__dict__.items())), arch, triton.__version__,
        torch.__version__]).encode()).hexdigest()[:32]
    module = None if rec.source is not None else jf.fn.__module__
    return _Job(key, jf.__name__, rec.source, module, rec.args, kwargs, arch, dump, dump_name)


def _build(job: _Job) -> BuildResult:
    """Compile one job (in a worker: a process that never ran Triton's interpreter, whose
    standard library would otherwise be interpreted functions)."""
    from triton.compiler import ASTSource

    try:
        if job.module_source is not None:
            kernel = load_kernel(job.name, job.module_source, jit=True)
        else:
            kernel = getattr(importlib.import_module(str(job.module)), job.name)
        jf = _jit_function(kernel)
        target, options, signature, constexprs, attrs = _specialize(jf, job.args, job.kwargs,
                                                                    job.arch)
        src = ASTSource(jf, signature, constexprs, attrs)
        log = io.StringIO()
        with knobs.compilation.scope(), knobs.nvidia.scope(), contextlib.redirect_stdout(log):
            knobs.compilation.always_compile = True  # ptxas must run: its log is the data
            knobs.nvidia.dump_ptxas_log = True
            ck = triton.compile(src, target=target, options=options.__dict__)
    except Exception as e:  # noqa: BLE001 - any compiler failure is a finding
        return BuildResult(0, 0, 0, 0, 0, "none", _first_error(e))
    regs, stores, loads, stack = _parse_ptxas(log.getvalue())
    if job.dump is not None:
        _dump(job.dump / job.arch, job.dump_name,
              job.module_source or inspect.getsource(jf.fn), ck)
    return BuildResult(regs, stores, loads, stack, int(ck.metadata.shared),
                       tensor_core_family(ck.asm.get("ptx", "")), None)


def _run_workers(jobs: Sequence[_Job], done: Callable[[_Job, BuildResult, float], None]) -> None:
    """Compile ``jobs`` in worker processes (one per core, at most 4), calling ``done`` as
    each finishes."""
    import os
    import pickle
    import subprocess
    import threading

    if not jobs:
        return
    n = max(1, min(4, os.cpu_count() or 1, len(jobs)))
    environ = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    by_key = {j.key: j for j in jobs}
    lock = threading.Lock()
    failures: list[str] = []

    def work(share: list[_Job]) -> None:
        proc = subprocess.Popen([sys.executable, "-m", "accel.backends.triton.aot"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=environ)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(pickle.dumps(share))
        proc.stdin.close()
        for line in proc.stdout:
            msg = json.loads(line)
            with lock:
                done(by_key[msg["key"]], BuildResult(**msg["result"]), msg["seconds"])
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.wait() != 0:
            with lock:
                failures.append(err.strip().splitlines()[-1] if err.strip() else "no output")

    threads = [threading.Thread(target=work, args=(list(jobs[i::n]),)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise AccelValueError(f"ahead-of-time compile worker failed: {failures[0]}")


def _worker_main() -> None:
    """``python -m accel.backends.triton.aot``: compile the pickled jobs on stdin, one JSON
    line per result on stdout."""
    import pickle

    jobs: list[_Job] = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - our parent's
    for job in jobs:
        t0 = time.perf_counter()
        result = _build(job)
        print(json.dumps({"key": job.key, "seconds": time.perf_counter() - t0,
                          "result": dataclasses.asdict(result)}), flush=True)


def _dump(directory: Path, name: str, source: str, ck: Any) -> None:
    import subprocess
    import tempfile

    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(source)
    (directory / f"{name}.ptx").write_text(ck.asm["ptx"])
    cubin = ck.asm.get("cubin")
    if not cubin:
        return
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        try:
            sass = subprocess.run([str(tool), "-sass", f.name], capture_output=True, text=True,
                                  check=True, timeout=120).stdout
        except (OSError, subprocess.SubprocessError) as e:
            sass = f"cuobjdump failed: {e}\n"
    (directory / f"{name}.sass").write_text(sass)


def _cache_dir() -> Path:
    return env.cache_dir() / "aot"


def _cached(key: str) -> BuildResult | None:
    try:
        data = json.loads((_cache_dir() / f"{key}.json").read_text())
        return BuildResult(**data)
    except (OSError, ValueError, TypeError):
        return None


def _store(key: str, result: BuildResult) -> None:
    try:
        d = _cache_dir()
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{key}.tmp"
        tmp.write_text(json.dumps(dataclasses.asdict(result)))
        tmp.replace(d / f"{key}.json")
    except OSError:
        pass  # a cache that cannot be written only costs a recompile


# ---- the whole model ----------------------------------------------------------------------


def group_flops(group: KernelGroup) -> int:
    """FLOPs of the group's nodes (the IR's cost model)."""
    return sum(_node_flops(n) for n in group.nodes)


def _node_flops(node: Node) -> int:
    f = node.opdef.count_flops([v.type if v is not None else None for v in node.inputs],
                               [v.type for v in node.outputs], node.attrs)
    return int(f) if isinstance(f, int) or f.is_number else 0  # symbolic: not estimated


def group_bytes(group: KernelGroup) -> int:
    """Bytes a fused group moves: its external inputs read once, its outputs written once."""
    return sum(int(v.type.nbytes) for v in (*group.inputs, *group.outputs)
               if v is not None and v.type.is_static)


_VIEWS = frozenset({"reshape", "permute", "expand", "select", "slice"})


def unfused_bytes(graph: Graph) -> int:
    """Bytes the graph moves with every op a kernel of its own (views free)."""
    total = 0
    for node in graph.nodes:
        if node.op in _VIEWS:
            continue
        total += sum(int(v.type.nbytes) for v in (*node.inputs, *node.outputs)
                     if v is not None and v.type.is_static)
    return total


@dataclass
class _Row:
    rec: LaunchRecord
    jf: Any
    kwargs: dict[str, Any]
    config: str
    job: _Job
    count: int = 0


def compile_launches(launches: Sequence[LaunchRecord], arch: str, *,
                     dump: str | Path | None = None,
                     progress: Callable[[str], None] | None = None,
                     use_cache: bool = True) -> list[KernelInfo]:
    """Compile each recorded launch for ``arch`` with every config it would try.

    One row per kernel group, kernel and specialization; identical kernels (other layers)
    compile once, and results already in the cache (``<cache>/aot``) are not recompiled
    (except with ``dump``, which needs the compiler's output).
    """
    dump_dir = Path(dump) if dump is not None else None
    rows: dict[tuple[str, str, str], _Row] = {}  # (group, kernel, compile key) -> row
    for rec in launches:
        jf = _jit_function(rec.kernel)
        for kw in _configs(rec.kernel, rec.kwargs):
            config = _describe_config(kw, jf.arg_names)
            dump_name = f"{jf.__name__}__{re.sub(r'[^0-9a-zA-Z]+', '_', config)}"
            job = _job(jf, rec, kw, arch, dump_dir, dump_name)
            row = rows.setdefault((rec.group.name, jf.__name__, job.key),
                                  _Row(rec, jf, kw, config, job))
            row.count += 1
    results: dict[str, BuildResult] = {}
    seconds: dict[str, float] = {}
    todo: dict[str, _Job] = {}
    for row in rows.values():
        key = row.job.key
        if key in results or key in todo:
            continue
        cached = _cached(key) if use_cache and dump_dir is None else None
        if cached is not None:
            results[key] = cached
        else:
            todo[key] = row.job
    t_start = time.perf_counter()

    def done(job: _Job, result: BuildResult, took: float) -> None:
        results[job.key], seconds[job.key] = result, took
        if result.error is None:  # a failure is recompiled (and reported) every time
            _store(job.key, result)
        if progress is not None:
            progress(f"[{len(seconds)}/{len(todo)}] {arch} {job.name} "
                     f"{job.dump_name.split('__')[-1]}: "
                     + (f"ERROR {result.error}" if result.error else
                        f"{result.registers} regs, {result.spill_bytes} B spill, "
                        f"{result.shared_bytes} B smem, {result.tensor_cores}")
                     + f" ({took:.1f} s)  [{time.perf_counter() - t_start:.0f} s]")
    if progress is not None:
        progress(f"{arch}: {len(rows)} kernel x config rows, {len(todo)} to compile, "
                 f"{len(results)} cached")
    _run_workers(list(todo.values()), done)
    infos = []
    for row in rows.values():
        rec, jf, kw, key = row.rec, row.jf, row.kwargs, row.job.key
        result = results[key]
        meta = {k: v for k, v in kw.items() if k in jf.arg_names}
        took = seconds.pop(key, 0.0)  # the first row of a compile carries its time
        infos.append(KernelInfo(
            name=jf.__name__, kind=rec.group.kind.name, group=rec.group.name, arch=arch,
            config=row.config, **dataclasses.asdict(result), flops=group_flops(rec.group),
            bytes_moved=group_bytes(rec.group), programs=rec.grid_size(meta),
            dtype=_anchor_dtype(rec.group), source=_source_path(rec, jf), instances=row.count,
            notes=rec.notes, seconds=took, cached=key not in todo))
    return infos


def _anchor_dtype(group: KernelGroup) -> str:
    v = group.anchor.inputs[0] if group.anchor.inputs else group.anchor.output
    return str(v.dtype).replace("torch.", "") if v is not None else "?"


def _source_path(rec: LaunchRecord, jf: Any) -> str | None:
    if rec.source is not None:
        return str(kernel_path(jf.__name__, rec.source))
    try:
        return inspect.getsourcefile(jf.fn)
    except TypeError:
        return None


# ---- reporting ----------------------------------------------------------------------------


def _peak_for(info: KernelInfo, peaks: DevicePeaks) -> float:
    if info.kind == "int8_linear":
        return peaks.int8
    if info.matmul_class and info.tensor_cores != "none":
        return peaks.tensor_tf32 if info.dtype == "float32" else peaks.tensor_fp16
    return peaks.fp32


def roofline(info: KernelInfo, device: str = "H100") -> float:
    """Estimated seconds of one launch on ``device``: max(FLOPs / peak, bytes / bandwidth),
    the peak being the tensor-core one for the kernel's dtype where its PTX uses tensor
    cores, the FP32 one otherwise. An estimate from data-sheet peaks, not a measurement."""
    peaks = _device(device)
    return max(info.flops / _peak_for(info, peaks), info.bytes_moved / peaks.bandwidth)


def _device(name: str) -> DevicePeaks:
    for key, peaks in DEVICES.items():
        if key.lower() in name.lower():
            return peaks
    raise AccelValueError(f"device {name!r}: the roofline knows {', '.join(DEVICES)}")


def chosen(infos: Iterable[KernelInfo]) -> list[KernelInfo]:
    """One config per kernel: the one the roofline cannot tell apart, so the first that
    compiles without problems (the autotuner's choice needs a GPU)."""
    best: dict[str, KernelInfo] = {}
    for info in infos:
        have = best.get(info.name)
        if have is None or (not have.ok and info.ok):
            best[info.name] = info
    return list(best.values())


def model_estimate(infos: Sequence[KernelInfo], graph: Graph | None = None,
                   device: str = "H100") -> dict[str, float]:
    """The model's roofline estimate on ``device`` (one config per kernel, each launch
    counted): fused bytes and seconds, and with ``graph`` the same bandwidth bound for the
    unfused graph (every op its own kernel), so a reader sees what fusion saves in bytes."""
    peaks = _device(device)
    kept = chosen(infos)
    out = {"kernels": float(len(kept)),
           "launches": float(sum(i.instances for i in kept)),
           "flops": float(sum(i.flops * i.instances for i in kept)),
           "bytes": float(sum(i.bytes_moved * i.instances for i in kept)),
           "estimate_s": sum(roofline(i, device) * i.instances for i in kept)}
    if graph is not None:
        out["unfused_bytes"] = float(unfused_bytes(graph))
        out["unfused_bandwidth_s"] = out["unfused_bytes"] / peaks.bandwidth
    return out


def verdict(infos: Sequence[KernelInfo]) -> str:
    """One line: how many compiled, spilled, used wgmma where expected."""
    bad = [i for i in infos if not i.ok]
    errors = [i for i in infos if i.error]
    spills = [i for i in infos if i.spill_bytes]
    no_wgmma = missing_wgmma(infos)
    exempt = [i for i in no_wgmma if i.notes]
    no_wgmma = [i for i in no_wgmma if not i.notes]
    archs = sorted({i.arch for i in infos})
    line = (f"{len(infos)} kernel compiles for {', '.join(archs) or 'no arch'}: "
            f"{len(infos) - len(errors)} compile, {len(spills)} spill")
    if "sm_90a" in archs:
        line += f", {len(no_wgmma)} fp16/bf16 matmul-class without wgmma on sm_90a"
    if exempt:
        line += f" ({len(exempt)} more by design: {exempt[0].notes[0]})"
    return ("OK: " if not bad and not no_wgmma else "PROBLEMS: ") + line


def missing_wgmma(infos: Iterable[KernelInfo]) -> list[KernelInfo]:
    """fp16/bf16 matmul-class kernels compiled for sm_90a that do not use wgmma."""
    return [i for i in infos if i.arch == "sm_90a" and i.matmul_class and i.error is None
            and i.dtype in ("float16", "bfloat16") and i.kind != "int8_linear"
            and i.tensor_cores != "wgmma"]


def table(infos: Sequence[KernelInfo], device: str | None = "H100") -> str:
    """A fixed-width table, one row per kernel x config."""
    head = (f"{'kernel':<44} {'kind':<11} {'arch':<6} {'config':<36} {'regs':>4} "
            f"{'spill':>6} {'stack':>5} {'smem':>7} {'tc':<5} {'GFLOP':>7} {'MB':>7} {'n':>3}")
    if device:
        head += f" {'est us':>8}"
    rows = [head, "-" * len(head)]
    for i in infos:
        row = (f"{i.name[:44]:<44} {i.kind:<11} {i.arch:<6} {i.config[:36]:<36} "
               f"{i.registers:>4} {i.spill_bytes:>6} {i.stack_bytes:>5} {i.shared_bytes:>7} "
               f"{i.tensor_cores:<5} {i.flops / 1e9:>7.3f} {i.bytes_moved / 1e6:>7.2f} "
               f"{i.instances:>3}")
        if device:
            row += f" {roofline(i, device) * 1e6:>8.2f}"
        if i.error:
            row += f"  ERROR {i.error}"
        rows.append(row)
    return "\n".join(rows)


def print_progress(line: str) -> None:
    """Progress to stderr (long compiles show where they are)."""
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    _worker_main()
