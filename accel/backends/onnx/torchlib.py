"""ONNX for the ``aten`` fallback nodes, from torch's own exporter.

An ATen op accel has no IR op for (the long tail: linear algebra, FFTs, special functions)
still has an ONNX form when ``torch.onnx.export(dynamo=True)`` has one, through onnxscript's
torchlib. :func:`lower_fallback` exports the node's op alone, with the node's static input
types, at the graph's opset, and splices the resulting nodes in (values renamed, initializers
carried over). accel's own lowerings stay the ones its passes and fusions see; this is only
for what would otherwise stop the export.

A fallback whose op torch.onnx cannot export either, or exports with another output type
(complex tensors as real pairs), or only with symbolic shapes, is an :class:`ExportError`
naming the node and the op. So is one whose export onnxruntime does not run to the ATen
op's values: every export is checked on inputs at three magnitudes before it is spliced
(:data:`CHECK_SCALES`), on top of :data:`TORCHLIB_DENYLIST`, so a wrong export found
neither by the denylist nor by the peer column is still refused, not used. The
``cpu`` target does not splice (its graphs keep fallbacks on the aten executor);
``accel.export_onnx`` does.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import warnings
from typing import Any

import onnx
import torch
from onnx import helper, numpy_helper

from accel.backends.onnx.builder import OnnxBuilder, onnx_dtype
from accel.errors import ExportError
from accel.ir.graph import Node
from accel.ir.ops.fallback import _aten

TORCHLIB_DENYLIST = frozenset({
    "aten.native_batch_norm.default", "aten._native_batch_norm_legit.default",
    "aten.batch_norm.default", "aten._native_batch_norm_legit_functional.default",
    "aten.avg_pool2d.default", "aten.log_sigmoid_forward.default", "prims.erfcx.default",
    "aten.special_erfcx.default", "aten.special_log_ndtr.default", "aten.nonzero.default",
    "aten.stft.default", "aten.as_strided.default", "prims.as_strided_scatter.default",
    "aten.as_strided_scatter.default",
})
"""Ops refused rather than exported wrong: those whose torch.onnx export onnxruntime runs to
other values than eager (the peer column of docs/opinfo.md: training batch norm, avg_pool2d
with ceil_mode, erfcx, log_ndtr, ...), and ``as_strided``, which reads its input's memory
layout: ONNX tensors are contiguous, the eager input may be a strided view."""


class _Refusal(ExportError):
    """An :class:`ExportError` that keeps its reason apart from the node it names (a cached
    refusal is raised again for another node of the same op)."""

    def __init__(self, why: str, message: str) -> None:
        super().__init__(message)
        self.why = why


class _OneOp(torch.nn.Module):
    """The fallback node's call, its outputs flattened to a tuple."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self.attrs = dict(node.attrs)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = _aten(*tensors, **self.attrs)
        return tuple(out) if isinstance(out, list | tuple) else (out,)


def _fail(node: Node, why: str) -> ExportError:
    target = node.attrs.get("target")
    return _Refusal(why,
        f"node {node.name} is an 'aten' fallback ({target}): an ATen op accel has no IR op "
        f"for, and torch.onnx's exporter could not give it an ONNX form either ({why}). Add "
        "an IR lowering for it in accel/frontend/aten_map.py, or run the model with "
        "accel.compile instead")


TORCH_ONNX_MIN_OPSET = 18
"""The oldest opset torch.onnx's exporter writes (asked for 17, it writes 18)."""


@functools.cache
def _torchlib_registry(opset: int) -> Any:
    """torch.onnx's table of ATen ops with an ONNX function at ``opset`` (None where this
    torch has no such private API: then every op is tried)."""
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:
        return None
    with _quiet():
        return _registration.ONNXRegistry.from_torchlib(opset_version=opset)


def _torch_onnx_knows(op: Any, opset: int) -> bool:
    """Whether torch.onnx may export ``op`` at ``opset``: torchlib has a function for it, or
    torch a decomposition into other ops (a cheap test that spares most failing exports)."""
    from torch._decomp import decomposition_table

    registry = _torchlib_registry(opset)
    if registry is None or not isinstance(op, torch._ops.OpOverload):  # noqa: SLF001
        return True
    if registry.is_registered(op) or op in decomposition_table:
        return True
    return torch._C._dispatch_has_kernel_for_dispatch_key(  # noqa: SLF001
        op.name(), "CompositeImplicitAutograd")


@contextlib.contextmanager
def _quiet() -> Any:
    """torch.onnx's progress lines, warnings and log records kept out of the caller's."""
    sink = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript",
                                              "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _export_one(node: Node, opset: int) -> onnx.ModelProto:
    """torch.onnx.export(dynamo=True) of the node's op alone, on zeros of its input types."""
    target = node.attrs.get("target")
    if opset < TORCH_ONNX_MIN_OPSET:
        raise _fail(node, f"torch.onnx exports opset {TORCH_ONNX_MIN_OPSET} or newer, and this "
                          f"export is at opset {opset}: export at opset={TORCH_ONNX_MIN_OPSET} "
                          "(the default)")
    if str(target) in TORCHLIB_DENYLIST:
        raise _fail(node, "its torch.onnx export is known to differ from eager")
    if not _torch_onnx_knows(target, opset):
        raise _fail(node, "torchlib has no function for it and torch no decomposition")
    for v in (*node.inputs, *node.outputs):
        if v is None:
            raise _fail(node, "an absent input")
        if not v.type.is_static:
            raise _fail(node, f"symbolic shape {v.type}")
        if v.dtype.is_complex or v.dtype in (torch.bfloat16,):
            raise _fail(node, f"dtype {v.dtype}")
    inputs = tuple(torch.zeros(tuple(v.shape), dtype=v.dtype) for v in node.inputs)
    names = [f"in{i}" for i in range(len(inputs))]
    try:
        with _quiet(), torch.no_grad():
            prog = torch.onnx.export(_OneOp(node), inputs, dynamo=True, opset_version=opset,
                                     input_names=names, verbose=False, report=False,
                                     optimize=True)
            model = prog.model_proto
            if model.functions:
                model = onnx.inliner.inline_local_functions(model)
    except Exception as e:  # noqa: BLE001 - re-raised naming the node
        raise _fail(node, _cause(e)) from e
    return model


def _cause(e: BaseException) -> str:
    """The innermost exception's first line (torch.onnx wraps the reason in two layers)."""
    while e.__cause__ is not None:
        e = e.__cause__
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first[:200]}"


CHECK_SCALES = (1.0, 30.0, 1e-3)
"""Each export is checked in onnxruntime against the ATen op on inputs drawn at these scales
(normal, large and tiny magnitudes: where approximations part ways)."""
RTOL = ATOL = 1e-5
"""How close onnxruntime must come to the ATen op on the check inputs."""
_CACHE: dict[Any, onnx.ModelProto | _Refusal] = {}
"""Checked exports (or why there is none) by operator, argument template, types and opset."""


def _check_input(v: Any, const: torch.Tensor | None, seed: int, scale: float) -> torch.Tensor:
    """A constant input's value, or a tensor of the input's type (floats: normal times
    ``scale``; bools: random; integers: zeros, valid as indices)."""
    if const is not None:
        return const
    g = torch.Generator().manual_seed(seed)
    shape, dtype = tuple(v.shape), v.dtype
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=g) * scale).to(dtype)
    if dtype == torch.bool:
        return torch.rand(shape, generator=g) < 0.5
    return torch.zeros(shape, dtype=dtype)


def _check_numerics(node: Node, model: onnx.ModelProto, consts: list[torch.Tensor | None]
                    ) -> None:
    """Refuse the export unless onnxruntime computes what the ATen op does (values, dtypes,
    shapes) on the check inputs; for random draws, the shapes and dtypes."""
    import numpy as np
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - re-raised naming the node
        raise _fail(node, f"onnxruntime cannot load its export ({_cause(e)})") from e
    names = [i.name for i in sess.get_inputs()]
    target = node.attrs.get("target")
    random = isinstance(target, torch._ops.OpOverload) and (  # noqa: SLF001
        torch.Tag.nondeterministic_seeded in target.tags)  # draws: shape and dtype only
    checked = 0
    for scale in CHECK_SCALES:
        ins = [_check_input(v, c, i, scale) for i, (v, c) in enumerate(zip(node.inputs, consts,
                                                                           strict=True))]
        try:
            with torch.no_grad():
                want = _OneOp(node)(*ins)
        except Exception:  # noqa: BLE001 - inputs outside the op's domain (probabilities...)
            continue
        checked += 1
        feeds = {n: ins[int(n[2:])].numpy() for n in names}
        try:
            got = sess.run(None, feeds)
        except Exception as e:  # noqa: BLE001 - re-raised naming the node
            raise _fail(node, f"onnxruntime fails on its export ({_cause(e)})") from e
        for g, w in zip(got, want, strict=True):
            w = w.detach().numpy()
            if g.shape != w.shape or g.dtype != w.dtype or not (random or np.allclose(
                    g, w, rtol=RTOL, atol=ATOL, equal_nan=True)):
                raise _fail(node, "its torch.onnx export differs from the ATen op on a check "
                                  f"input (scale {scale:g})")
    if not checked and not random:  # draws were shape-checked against the node's types
        raise _fail(node, "no check input is in the op's domain, so its export could not be "
                          "verified")


def _checked_export(b: OnnxBuilder, node: Node) -> onnx.ModelProto:
    """:func:`_export_one`, checked in onnxruntime, cached when no input is a constant."""
    consts = [b.constant(v) for v in node.inputs]
    key: Any = (node.attrs.get("target"), node.attrs.get("args"), node.attrs.get("kwargs"),
                tuple((tuple(v.shape), v.dtype) for v in node.inputs if v is not None),
                b.opset)
    try:
        hash(key)
    except TypeError:
        key = None
    cacheable = key is not None and all(c is None for c in consts)
    hit = _CACHE.get(key) if cacheable else None
    if hit is None:
        try:
            hit = _export_one(node, b.opset)
            _check_numerics(node, hit, consts)
        except _Refusal as e:
            hit = e
        if cacheable:
            _CACHE[key] = hit
    if isinstance(hit, _Refusal):
        raise _fail(node, hit.why)
    return hit


def lower_fallback(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """The ``aten`` node through torch.onnx (see the module docstring)."""
    model = _checked_export(b, node)
    versions = {o.domain or "": o.version for o in model.opset_import}
    if set(versions) - {"", "ai.onnx"} or versions.get("", b.opset) != b.opset:
        raise _fail(node, f"it used opsets {versions}, not the default domain at {b.opset}")
    g = model.graph
    if len(g.output) != len(node.outputs):
        raise _fail(node, f"{len(g.output)} outputs, the node has {len(node.outputs)}")
    for o, v in zip(g.output, node.outputs, strict=True):
        if o.type.tensor_type.elem_type != onnx_dtype(v.dtype):
            raise _fail(node, f"output {o.name} of another dtype than {v.dtype}")
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in o.type.tensor_type.shape.dim]
        if o.type.tensor_type.HasField("shape") and None not in dims \
                and tuple(dims) != tuple(v.shape):
            raise _fail(node, f"output {o.name} of shape {tuple(dims)}, not {tuple(v.shape)}")
    rename: dict[str, str] = {"": ""}
    by_name = dict(zip((f"in{i}" for i in range(len(inputs))), inputs, strict=True))
    for i in g.input:
        if i.name not in by_name:
            raise _fail(node, f"an unexpected input {i.name}")
        rename[i.name] = by_name[i.name]
    prefix = f"{node.name}_"
    for t in g.initializer:
        rename[t.name] = b.const(numpy_helper.to_array(t), prefix + t.name)
    for n in g.node:
        if n.domain not in ("", "ai.onnx") or any(a.type in (onnx.AttributeProto.GRAPH,
                                                               onnx.AttributeProto.GRAPHS)
                                                  for a in n.attribute):
            raise _fail(node, f"a {n.domain or 'ai.onnx'}::{n.op_type} node with subgraphs or "
                              "outside the default domain")
        for out in n.output:
            if out:
                rename[out] = b.fresh(prefix + out)
    for n in g.node:
        missing = [i for i in n.input if i not in rename]
        if missing:
            raise _fail(node, f"node {n.name} reads {missing[0]}, defined nowhere")
        copy = helper.make_node(n.op_type, [rename[i] for i in n.input],
                                [rename[o] for o in n.output],
                                name=b.fresh(prefix + (n.name or n.op_type)))
        copy.attribute.extend(n.attribute)
        b.nodes.append(copy)
    return [rename[o.name] for o in g.output]


def fallback_exportable(node: Node) -> bool:
    """Whether :func:`lower_fallback` may try ``node`` (an ``aten`` node of static types)."""
    return node.op == "aten" and all(v is not None and v.type.is_static
                                     for v in (*node.inputs, *node.outputs))


__all__ = ["CHECK_SCALES", "TORCHLIB_DENYLIST", "TORCH_ONNX_MIN_OPSET", "fallback_exportable",
           "lower_fallback"]
