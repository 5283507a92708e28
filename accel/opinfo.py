"""Op coverage and numerics against PyTorch's own OpInfo database.

For each OpInfo in ``torch.testing._internal.common_methods_invocations.op_db`` (which needs
the ``expecttest`` package), the op's first float32 CPU sample is wrapped in a module (the
sample's tensors are its inputs, everything else is closed over) and sent through

- ``accel.compile(module, inputs, target="reference")``: **ir** when every node lowered to
  IR ops, **fallback** when some nodes run as ``aten`` fallback nodes (which ones is
  recorded), **error** when compile raised (type and first line recorded); the compiled
  output is compared with eager and marked **wrong** when it differs (a silent wrong result);
- ``accel.export_onnx`` into onnxruntime: **exact**, **wrong** or **error**;
- optionally (``peer=True``) ``torch.onnx.export(dynamo=True)`` of the same module into
  onnxruntime, the peer column: **exact**, **wrong** or **error**.

Both exports are static (no dynamic axes), as the samples are; the ONNX export reuses the
compiled graph (it captures the module itself when compile failed). Outputs are compared with
``torch.testing.assert_close`` (:data:`RTOL`, :data:`ATOL`, ``equal_nan=True``; dtypes and
output structure must match); ops that are nondeterministic by nature (random sampling,
dropout, ``empty*``) are compared by structure, shape and dtype only. Ops whose samples cannot
be wrapped are
**skipped** with a reason: no float32 support, no tensor input, in-place-only variants,
sparse or complex inputs, a sample eager itself cannot run, no tensor output. Each path of
each op is bounded by ``timeout`` seconds (SIGALRM, main thread only).

    from accel.opinfo import load_ops, sweep, summarize
    results = sweep(load_ops())
    print(summarize(results))

The whole database takes about 2 minutes on 2 shared cores (40 s of it the torch.onnx
exports of aten fallback nodes): ``tests/test_opinfo_sweep.py`` runs it in CI;
``python benchmarks/opinfo.py`` adds the peer column and writes docs/opinfo.md.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import signal
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from accel.errors import AccelError


class Capture(str, Enum):
    """What ``accel.compile(target="reference")`` made of an op's sample."""

    IR = "ir"
    """Every node lowered to IR ops."""
    FALLBACK = "fallback"
    """Some nodes run as ``aten`` fallback nodes."""
    ERROR = "error"
    """Compile raised."""
    SKIPPED = "skipped"
    """The sample could not be wrapped in a module (see ``OpResult.skip_reason``)."""


class Check(str, Enum):
    """How a path's output compared with eager."""

    EXACT = "exact"
    """Equal to float tolerance (shape and dtype only for nondeterministic ops)."""
    WRONG = "wrong"
    """Ran and returned something else: a silent wrong result."""
    ERROR = "error"
    """Raised (export, session creation or run)."""
    NOT_RUN = "-"
    """Not attempted (skipped op, or the peer column not asked for)."""


NONDETERMINISTIC = re.compile(
    r"^(normal|uniform|bernoulli|rand\w*|randn\w*|randint\w*|cauchy|exponential|geometric|"
    r"log_normal|multinomial|nn\.functional\.\w*dropout\w*|nn\.functional\.rrelu|empty\w*|"
    r"new_empty\w*)"
    r"(\..*)?$")
"""Op keys whose outputs are random (or uninitialized) by nature (``rrelu``'s samples
train: random slopes)."""

RTOL, ATOL = 1e-5, 1e-5
"""Float32 tolerances (``|actual - eager| <= ATOL + RTOL * |eager|``): assert_close's own
(1.3e-6, 1e-5) flag a softmax computed by onnxruntime's kernels instead of ATen's."""

DEFAULT_TIMEOUT_S = 30.0
"""Per-op bound on each path (compile+run, export+run, peer export+run)."""


@dataclass
class OpResult:
    """What the sweep found for one OpInfo entry."""

    op: str
    """The OpInfo name, with ``.variant`` when it has one."""
    capture: Capture = Capture.SKIPPED
    """Outcome of ``accel.compile``."""
    compiled: Check = Check.NOT_RUN
    """The compiled model's output against eager (``ir``/``fallback`` ops only)."""
    onnx: Check = Check.NOT_RUN
    """``accel.export_onnx`` into onnxruntime."""
    peer: Check = Check.NOT_RUN
    """``torch.onnx.export(dynamo=True)`` into onnxruntime."""
    fallback_ops: tuple[str, ...] = ()
    """ATen ops of the fallback nodes."""
    error: str = ""
    """Compile's exception: ``Type: first line``."""
    internal: bool = False
    """Whether compile's exception was not an :class:`AccelError` (a crash from inside)."""
    mismatch: str = ""
    """How the compiled output differed from eager."""
    onnx_error: str = ""
    """Why the ONNX path errored or was wrong."""
    onnx_internal: bool = False
    """Whether the ONNX export's exception was not an :class:`AccelError`."""
    peer_error: str = ""
    """Why the peer path errored or was wrong."""
    skip_reason: str = ""
    """Why the op was skipped."""
    nondeterministic: bool = False
    """Compared by structure, shape and dtype only."""
    seconds: float = 0.0
    """Wall time of the op on every path."""

    @property
    def wrong(self) -> list[str]:
        """The accel paths on which this op was silently wrong (``compile``, ``onnx``)."""
        return [p for p, c in (("compile", self.compiled), ("onnx", self.onnx))
                if c is Check.WRONG]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, Enum):
                d[k] = v.value
        d["fallback_ops"] = list(self.fallback_ops)
        return d


class Skip(Exception):  # noqa: N818 - a signal, not an error
    """The sample cannot be wrapped; the message is the reason."""


class OpTimeout(Exception):  # noqa: N818
    """A path ran past its bound."""


# ---- the op database -------------------------------------------------------------------
def load_ops() -> list[Any]:
    """Every OpInfo in ``op_db`` (importing it takes ~10 s and needs ``expecttest``)."""
    from torch.testing._internal.common_methods_invocations import op_db

    return list(op_db)


def op_key(op: Any) -> str:
    """``name`` or ``name.variant``: unique over ``op_db``."""
    return f"{op.name}.{op.variant_test_name}" if op.variant_test_name else op.name


def is_nondeterministic(key: str) -> bool:
    """Whether the op's output is random or uninitialized by nature."""
    return bool(NONDETERMINISTIC.match(key))


# ---- wrapping a sample -----------------------------------------------------------------
class OpCall(torch.nn.Module):
    """Calls ``fn(sample.input, *sample.args, **sample.kwargs)`` with the sample's tensors
    replaced by the module's inputs (in pytree leaf order)."""

    def __init__(self, fn: Callable[..., Any], leaves: list[Any], spec: Any,
                 slots: list[int]) -> None:
        super().__init__()
        self.fn = fn
        self.leaves = [None if i in slots else v for i, v in enumerate(leaves)]
        self.spec = spec
        self.slots = slots

    def forward(self, *tensors: torch.Tensor) -> Any:
        leaves = list(self.leaves)
        for i, t in zip(self.slots, tensors, strict=True):
            leaves[i] = t
        inp, args, kwargs = tree_unflatten(leaves, self.spec)
        return self.fn(inp, *args, **kwargs)


def first_sample(op: Any) -> Any:
    """The op's first float32 CPU sample; :class:`Skip` where there is none."""
    key = op_key(op)
    if torch.float32 not in op.supported_dtypes("cpu"):
        raise Skip("no float32 support on CPU")
    if key.endswith("_") and not key.endswith("__"):
        raise Skip("in-place-only variant")
    try:  # sample_inputs_func, not sample_inputs: its TrackedInputIter walks the whole stack
        torch.manual_seed(0)  # (inspect.stack, ~0.1 s under pytest) for every op; seed instead
        return next(iter(op.sample_inputs_func(op, "cpu", torch.float32, False)))
    except StopIteration:
        raise Skip("no float32 sample") from None
    except Exception as e:  # noqa: BLE001 - a broken generator is the op db's problem
        raise Skip(f"sample generation failed: {_line(e)}") from e


def wrap(op: Any, sample: Any) -> tuple[OpCall, tuple[torch.Tensor, ...]]:
    """A module calling ``op`` on ``sample`` and its tensor inputs; :class:`Skip` when the
    sample cannot be wrapped."""
    leaves, spec = tree_flatten((sample.input, tuple(sample.args), dict(sample.kwargs)))
    slots = [i for i, v in enumerate(leaves) if isinstance(v, torch.Tensor)]
    if not slots:
        raise Skip("no tensor input")
    tensors = tuple(leaves[i].detach() for i in slots)
    if any(t.layout is not torch.strided for t in tensors):
        raise Skip("sparse input")
    if any(t.is_complex() for t in tensors):
        raise Skip("complex input")
    return OpCall(op.op, leaves, spec, slots), tensors


# ---- comparing outputs -----------------------------------------------------------------
def compare(expected: Any, actual: Any, shape_only: bool = False) -> str:
    """Why ``actual`` differs from ``expected`` (``""`` when it does not): structure, then
    per tensor shape, dtype and (unless ``shape_only``) values to float tolerance."""
    e_leaves, e_spec = tree_flatten(expected)
    a_leaves, a_spec = tree_flatten(actual)
    if len(e_leaves) != len(a_leaves):
        return f"{len(a_leaves)} output leaves, eager has {len(e_leaves)} ({_kinds(actual)} " \
               f"vs {_kinds(expected)})"
    if _structure(e_spec) != _structure(a_spec):
        return f"output structure {_kinds(actual)}, eager returns {_kinds(expected)}"
    return compare_flat(e_leaves, a_leaves, shape_only)


def compare_flat(expected: list[Any], actual: list[Any], shape_only: bool = False,
                 complex_as_real: bool = False) -> str:
    """:func:`compare` for flat lists of leaves; ``complex_as_real`` accepts a real tensor
    with a trailing dim of 2 for a complex one (torch.onnx's representation)."""
    if len(expected) != len(actual):
        return f"{len(actual)} outputs, eager has {len(expected)}"
    for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
        if not isinstance(e, torch.Tensor):
            if isinstance(a, torch.Tensor) or e != a:
                return f"output {i}: {a!r}, eager returns {e!r}"
            continue
        if not isinstance(a, torch.Tensor):
            return f"output {i}: a {type(a).__name__}, eager returns a tensor"
        e, a = e.resolve_conj().resolve_neg(), a.resolve_conj().resolve_neg()
        if complex_as_real and e.is_complex() and not a.is_complex():
            e = torch.view_as_real(e)
        if tuple(a.shape) != tuple(e.shape):
            return f"output {i}: shape {tuple(a.shape)}, eager {tuple(e.shape)}"
        if a.dtype != e.dtype:
            return f"output {i}: dtype {a.dtype}, eager {e.dtype}"
        if shape_only:
            continue
        try:
            torch.testing.assert_close(a, e, rtol=RTOL, atol=ATOL, equal_nan=True,
                                       check_device=False, check_stride=False)
        except AssertionError as err:
            lines = [s.strip() for s in str(err).splitlines() if "difference" in s]
            return f"output {i}: " + ("; ".join(lines[:2]) or _line(err))
        except Exception as err:  # noqa: BLE001 - a tensor assert_close cannot compare
            return f"output {i}: could not compare ({_line(err)})"
    return ""


def _structure(spec: Any) -> Any:
    """A treespec with lists, tuples, namedtuples and torch.return_types read as one kind of
    sequence (torch's structseqs come back as tuples once exported); nesting still counts."""
    if spec.is_leaf():
        return "*"
    t = spec.type
    kind = "seq" if isinstance(t, type) and issubclass(t, list | tuple) else (t, repr(spec.context))
    return kind, tuple(_structure(c) for c in spec.children())


def _kinds(x: Any, depth: int = 0) -> str:
    """``tuple(list(tensor))``: the nesting of an output, for messages."""
    if isinstance(x, torch.Tensor):
        return "tensor"
    if isinstance(x, list | tuple) and depth < 3:
        inner = ", ".join(_kinds(y, depth + 1) for y in x[:4]) + (", ..." if len(x) > 4 else "")
        return f"{type(x).__name__}({inner})"
    return type(x).__name__


def _line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")[:300]


def _clone(tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(t.clone() for t in tensors)


# ---- bounding time ---------------------------------------------------------------------
@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`OpTimeout` in the block after ``seconds`` (main thread only; SIGALRM
    interrupts Python code, not a long native call, which ends first)."""
    if (not seconds or threading.current_thread() is not threading.main_thread()
            or not hasattr(signal, "setitimer")):
        yield
        return

    def _alarm(signum: int, frame: Any) -> None:
        raise OpTimeout(f"ran past {seconds:g} s")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---- the paths ---------------------------------------------------------------------------
def _ort_session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _run_ort(path: Path, inputs: tuple[torch.Tensor, ...]
             ) -> tuple[list[torch.Tensor], dict[int, torch.Tensor]]:
    """The model's own outputs, and the ``input<i>_updated`` outputs of inputs it updates
    in place (by input index)."""
    sess = _ort_session(path)
    feed = {}
    for pos, i in enumerate(sess.get_inputs()):
        m = re.fullmatch(r"input(\d+)", i.name)
        feed[i.name] = inputs[int(m.group(1)) if m else pos].numpy()
    outs, updated = [], {}
    for o, value in zip(sess.get_outputs(), sess.run(None, feed), strict=True):
        m = re.fullmatch(r"input(\d+)_updated", o.name)
        if m:
            updated[int(m.group(1))] = torch.from_numpy(value)
        else:
            outs.append(torch.from_numpy(value))
    return outs, updated


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal shape, dtype and values, NaN equal to NaN (whether an input was written)."""
    return a.shape == b.shape and a.dtype == b.dtype and bool(
        ((a == b) | (a != a) & (b != b)).all())


def compare_updates(before: tuple[torch.Tensor, ...], eager: tuple[torch.Tensor, ...],
                    actual: dict[int, torch.Tensor], shape_only: bool = False) -> str:
    """Why the inputs a path left (``actual``: by input index) differ from those eager left:
    every input eager updated in place must be updated (to its value, or for a random op to
    something of its shape and dtype that differs from the input), and no other."""
    for i, (b, e) in enumerate(zip(before, eager, strict=True)):
        a = actual.get(i, b)
        changed = not _same(b, e)
        if not changed and i not in actual:
            continue
        if changed and (a is b or (shape_only and b.numel() and _same(a, b))):
            return f"input {i}: eager updates it in place, this path left it unchanged"
        why = compare_flat([e], [a], shape_only)
        if why:
            return f"input {i} after the call: {why.removeprefix('output 0: ')}"
    return ""


def _tensor_leaves(out: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]


def _compile_path(r: OpResult, module: OpCall, inputs: tuple, expected: Any,
                  timeout: float | None, eager_inputs: tuple = ()) -> Any:
    import accel

    try:
        with deadline(timeout):
            compiled = accel.compile(module, _clone(inputs), target="reference", name=r.op)
    except Exception as e:  # noqa: BLE001 - every failure is a finding
        r.capture, r.error, r.internal = Capture.ERROR, _line(e), not isinstance(e, AccelError)
        return None
    fallbacks = compiled.graph.fallbacks()
    r.capture = Capture.FALLBACK if fallbacks else Capture.IR
    r.fallback_ops = tuple(sorted({str(n.attrs["target"]) for n in fallbacks}))
    args = _clone(inputs)
    try:
        with deadline(timeout), torch.no_grad():
            torch.manual_seed(0)
            actual = compiled(*args)
    except Exception as e:  # noqa: BLE001
        r.compiled, r.mismatch = Check.ERROR, f"compiled model raised {_line(e)}"
        return compiled
    r.mismatch = compare(expected, actual, r.nondeterministic) or compare_updates(
        inputs, eager_inputs or inputs, {i: a for i, a in enumerate(args)
                                         if not _same(a, inputs[i])}, r.nondeterministic)
    r.compiled = Check.WRONG if r.mismatch else Check.EXACT
    return compiled


def _onnx_path(r: OpResult, module: OpCall, compiled: Any, inputs: tuple, expected: Any,
               workdir: Path, timeout: float | None, eager_inputs: tuple = ()) -> None:
    import accel

    path = workdir / "accel.onnx"
    try:
        with deadline(timeout):
            accel.export_onnx(compiled if compiled is not None else module, _clone(inputs),
                              path, dynamic_batch=False)
    except Exception as e:  # noqa: BLE001
        r.onnx, r.onnx_error = Check.ERROR, _line(e)
        r.onnx_internal = not isinstance(e, AccelError | OpTimeout)
        return
    try:
        with deadline(timeout):
            out, updated = _run_ort(path, inputs)
    except Exception as e:  # noqa: BLE001 - accel wrote a model onnxruntime cannot run
        r.onnx, r.onnx_error = Check.ERROR, f"onnxruntime: {_line(e)}"
        return
    r.onnx_error = compare_flat(_tensor_leaves(expected), out, r.nondeterministic) or \
        compare_updates(inputs, eager_inputs or inputs, updated, r.nondeterministic)
    r.onnx = Check.WRONG if r.onnx_error else Check.EXACT


def _peer_path(r: OpResult, module: OpCall, inputs: tuple, expected: Any,
               workdir: Path, timeout: float | None) -> None:
    path = workdir / "peer.onnx"
    try:
        with deadline(timeout), contextlib.redirect_stdout(io.StringIO()):
            prog = torch.onnx.export(module, _clone(inputs), dynamo=True, verbose=False,
                                     report=False)
            prog.save(str(path))
            sess = _ort_session(path)
            names = [i.name for i in sess.get_inputs()]
            if len(names) != len(inputs):  # unused inputs pruned: match by placeholder name
                placeholders = [n.name for n in prog.exported_program.graph.nodes
                                if n.op == "placeholder"]
                feed = {n: inputs[placeholders.index(n)].numpy() for n in names}
            else:
                feed = {n: t.numpy() for n, t in zip(names, inputs, strict=True)}
            out = [torch.from_numpy(o) for o in sess.run(None, feed)]
    except Exception as e:  # noqa: BLE001
        r.peer, r.peer_error = Check.ERROR, _line(e)
        return
    r.peer_error = compare_flat(_tensor_leaves(expected), out, r.nondeterministic,
                                complex_as_real=True)
    r.peer = Check.WRONG if r.peer_error else Check.EXACT


def run_op(op: Any, *, peer: bool = False, timeout: float | None = DEFAULT_TIMEOUT_S
           ) -> OpResult:
    """Sweep one OpInfo entry through every path (see the module docstring)."""
    r = OpResult(op_key(op), nondeterministic=is_nondeterministic(op_key(op)))
    start = time.perf_counter()
    try:
        module, inputs = wrap(op, first_sample(op))
        try:
            eager_inputs = _clone(inputs)  # what eager leaves in them (in-place ops)
            with deadline(timeout), torch.no_grad():
                torch.manual_seed(0)
                expected = module(*eager_inputs)
        except Exception as e:  # noqa: BLE001
            raise Skip(f"eager fails on the sample: {_line(e)}") from e
        if not _tensor_leaves(expected):
            raise Skip(f"no tensor output ({type(expected).__name__})")
    except Skip as s:
        r.skip_reason = str(s)
        r.seconds = time.perf_counter() - start
        return r
    # torch.export prints a failing trace's partial graph to stderr: keep it out of the log
    with (tempfile.TemporaryDirectory(prefix="accel-opinfo-") as d,
          contextlib.redirect_stderr(io.StringIO())):
        compiled = _compile_path(r, module, inputs, expected, timeout, eager_inputs)
        _onnx_path(r, module, compiled, inputs, expected, Path(d), timeout, eager_inputs)
        if peer:
            _peer_path(r, module, inputs, expected, Path(d), timeout)
    r.seconds = time.perf_counter() - start
    return r


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No warnings or torch log lines, no compile cache (an ``OpCall``'s fingerprint cannot
    tell ops apart safely), single-threaded torch: a sweep is many tiny graphs."""
    old_env = os.environ.get("ACCEL_COMPILE_CACHE")
    os.environ["ACCEL_COMPILE_CACHE"] = "0"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    loggers = [logging.getLogger(n) for n in ("torch", "torch.fx.experimental.symbolic_shapes",
                                              "torch.onnx", "torch._dynamo", "torch.export")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        torch.set_num_threads(threads)
        if old_env is None:
            os.environ.pop("ACCEL_COMPILE_CACHE", None)
        else:
            os.environ["ACCEL_COMPILE_CACHE"] = old_env


def sweep(ops: Iterable[Any], *, peer: bool = False,
          timeout: float | None = DEFAULT_TIMEOUT_S,
          progress: Callable[[OpResult], None] | None = None) -> list[OpResult]:
    """:func:`run_op` on every op, in order; ``progress`` is called after each."""
    results = []
    with _quiet():
        for op in ops:
            r = run_op(op, peer=peer, timeout=timeout)
            results.append(r)
            if progress is not None:
                progress(r)
    return results


# ---- summaries -------------------------------------------------------------------------
@dataclass
class Totals:
    """Counts over a sweep."""

    ops: int = 0
    capture: Counter = field(default_factory=Counter)
    """``ir`` / ``fallback`` / ``error`` / ``skipped``."""
    compiled: Counter = field(default_factory=Counter)
    """The compiled model against eager: ``exact`` / ``wrong`` / ``error``."""
    onnx: Counter = field(default_factory=Counter)
    peer: Counter = field(default_factory=Counter)

    @property
    def attempted(self) -> int:
        """Ops not skipped."""
        return self.ops - self.capture[Capture.SKIPPED.value]


def totals(results: Iterable[OpResult]) -> Totals:
    """Counts of every outcome."""
    t = Totals()
    for r in results:
        t.ops += 1
        t.capture[r.capture.value] += 1
        if r.capture is not Capture.SKIPPED:
            if r.compiled is not Check.NOT_RUN:
                t.compiled[r.compiled.value] += 1
            t.onnx[r.onnx.value] += 1
            if r.peer is not Check.NOT_RUN:
                t.peer[r.peer.value] += 1
    return t


def summarize(results: list[OpResult]) -> str:
    """A few lines: the totals, the wrong ops and the skip reasons."""
    t = totals(results)
    n = max(t.attempted, 1)

    def row(c: Counter, keys: tuple[str, ...]) -> str:
        return ", ".join(f"{k} {c[k]} ({100 * c[k] / n:.0f}%)" for k in keys)

    lines = [f"{t.ops} ops, {t.attempted} attempted, {t.capture['skipped']} skipped",
             "accel.compile: " + row(t.capture, ("ir", "fallback", "error")),
             "compiled vs eager: " + row(t.compiled, ("exact", "wrong", "error")),
             "accel ONNX: " + row(t.onnx, ("exact", "wrong", "error"))]
    if t.peer:
        lines.append("torch.onnx (dynamo) ONNX: " + row(t.peer, ("exact", "wrong", "error")))
    wrong = [f"{r.op} ({'/'.join(r.wrong)})" for r in results if r.wrong]
    lines.append("wrong: " + (", ".join(wrong) or "none"))
    return "\n".join(lines)


def error_categories(results: Iterable[OpResult]) -> Counter:
    """Failures of accel's paths grouped by kind: ``"compile: CaptureError: ..."``,
    ``"onnx: ..."``; a crash from inside (not an :class:`AccelError`) says ``internal``."""
    c: Counter = Counter()
    for r in results:
        if r.error:
            c[f"compile: {'internal ' if r.internal else ''}{category(r.error)}"] += 1
        if r.compiled is Check.ERROR:
            c[f"compiled model: {category(r.mismatch)}"] += 1
        if r.onnx is Check.ERROR and r.capture is not Capture.ERROR:
            c[f"onnx: {'internal ' if r.onnx_internal else ''}{category(r.onnx_error)}"] += 1
    return c


_CATEGORIES = [
    (r"is an 'aten' fallback.*torchlib has no function",
     "ExportError: an aten fallback node torch.onnx has no ONNX function for either"),
    (r"is an 'aten' fallback.*known to differ from eager",
     "ExportError: an aten fallback node whose torch.onnx export is wrong (refused)"),
    (r"is an 'aten' fallback.*torch\.onnx's exporter could not", "ExportError: an aten "
     "fallback node torch.onnx could not export either (dtype, opset or export failure)"),
    (r"is an 'aten' fallback", "ExportError: an aten fallback node has no ONNX lowering"),
    (r"updates .* in place", "CaptureError: in-place update of an input or buffer (refused)"),
    (r"shape inference failed", "CaptureError: an aten fallback's output shape depends on the "
                                "data (histogram, geqrf, to_sparse, ...)"),
    (r"could not capture [^:]*(?: at [^`]*`[^`]*`)?: (\w+)",
     r"CaptureError: torch.export failed: \1"),
    (r"^onnxruntime: .*invalid model", "onnxruntime: accel wrote an invalid ONNX model"),
    (r"^onnxruntime: (\w+)", r"onnxruntime: \1 running accel's ONNX model"),
    (r"has no ONNX equivalent", "ExportError: a dtype with no ONNX equivalent"),
]


def category(msg: str) -> str:
    """The kind of a failure message (node names, numbers and shapes blanked)."""
    for pattern, kind in _CATEGORIES:
        m = re.search(pattern, msg)
        if m:
            return m.expand(kind)
    msg = re.sub(r"node \w+", "node N", msg)
    msg = re.sub(r"\b\d+\b", "N", msg)
    return msg[:100]
