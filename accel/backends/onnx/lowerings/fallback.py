"""ONNX for ``aten`` fallback nodes, from torch's own exporter (onnxscript's torchlib).

accel's hand-written lowerings cover the ops its passes and fusions need to see; the long
tail of ATen ops stays an ``aten`` fallback node. Rather than writing hundreds of lowerings
again, each fallback node is exported by ``torch.onnx.export(dynamo=True)`` — a one-op
module calling the node's ATen operator on inputs of the node's types — and the resulting
standard-op subgraph is spliced into accel's model with fresh names.

A splice is only taken if it is right: the one-op model runs in onnxruntime on the example
inputs and must match the ATen operator (values, dtypes, shapes); otherwise, or if torch's
exporter cannot express the op, the node is refused with an :class:`ExportError` that says
so (the CPU target then keeps the aten executor). Exports are cached per operator, argument
template and input types. Symbolic input shapes are not spliced (the one-op export is
static); such graphs keep the aten executor.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any

import numpy as np
import onnx
import torch

from accel.backends.onnx.builder import OnnxBuilder
from accel.backends.onnx.registry import onnx_lowering
from accel.errors import ExportError
from accel.ir.graph import Node, Value
from accel.ir.shapes import is_symbolic

CHECK_SCALES = (30.0, 1e-3)
"""Besides standard-normal inputs, each splice is checked on inputs scaled by these."""
RTOL = ATOL = 1e-5
"""How close onnxruntime must come to the ATen op on the check inputs (float32)."""
_CACHE: dict[Any, onnx.GraphProto | ExportError] = {}
"""One-op exports (or the reason there is none) by operator, template, types and opset."""


class _OneOp(torch.nn.Module):
    """A module applying one fallback node's ATen call to its tensor inputs."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self.ref, self.attrs = node.opdef.ref, dict(node.attrs)

    def forward(self, *tensors: torch.Tensor) -> Any:
        out = self.ref(*tensors, **self.attrs)
        return tuple(out) if isinstance(out, list) else out


def _example(v: Value, const: torch.Tensor | None, seed: int, scale: float = 1.0
             ) -> torch.Tensor:
    """The node input's constant value, or a tensor of its type (floats: normal times
    ``scale``; bools: random; ints: zeros, valid as indices)."""
    if const is not None:
        return const
    shape, dtype = tuple(v.shape), v.dtype
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=g) * scale).to(dtype)
    if dtype == torch.bool:
        return torch.rand(shape, generator=g) < 0.5
    return torch.zeros(shape, dtype=dtype)


def _export_one(node: Node, examples: list[torch.Tensor], constant: tuple[bool, ...],
                opset: int) -> onnx.GraphProto:
    """torch.onnx.export of the node's one-op module, checked in onnxruntime."""
    target = node.attrs.get("target")
    quiet = contextlib.redirect_stdout(io.StringIO())
    log = logging.getLogger("torch.onnx")
    level = log.level
    try:
        with quiet, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            log.setLevel(logging.ERROR)
            program = torch.onnx.export(_OneOp(node), tuple(examples), dynamo=True,
                                        opset_version=opset, optimize=True, verbose=False)
            model = program.model_proto
    except Exception as e:  # noqa: BLE001 - re-raised naming the op
        raise ExportError(f"'aten' fallback {target}: torch.onnx.export cannot express it "
                          f"either ({_reason(e)})") from None
    finally:
        log.setLevel(level)
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    bad = sorted({n.op_type for n in model.graph.node if n.domain not in ("", "ai.onnx")}
                 | {n.op_type for n in model.graph.node
                    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                           for a in n.attribute)})
    if bad:
        raise ExportError(f"'aten' fallback {target}: torch's exporter emits ops accel cannot "
                          f"splice ({', '.join(bad)})")
    consts = [t if is_const else None for t, is_const in zip(examples, constant, strict=True)]
    _check_numerics(node, model, examples)
    for scale in CHECK_SCALES:  # large and tiny magnitudes: where approximations part ways
        _check_numerics(node, model, [_example(v, c, i, scale) for i, (v, c) in
                                      enumerate(zip(node.inputs, consts, strict=True))])
    return model.graph


def _reason(e: Exception) -> str:
    """The line of torch's export report that says why (its summary's first exception)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("<class") and ":" in line:
            return line.split(">:", 1)[-1].strip()[:200]
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__


def _check_numerics(node: Node, model: onnx.ModelProto, examples: list[torch.Tensor]) -> None:
    """Refuse the export unless onnxruntime computes what the ATen operator does."""
    import onnxruntime as ort

    target = node.attrs.get("target")
    names = [i.name for i in model.graph.input]
    feeds = {n: examples[_input_index(n, len(examples))].numpy() for n in names}
    try:
        sess = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        got = sess.run(None, feeds)
    except Exception as e:  # noqa: BLE001 - re-raised naming the op
        raise ExportError(f"'aten' fallback {target}: torch's ONNX export of it does not run "
                          f"in onnxruntime ({type(e).__name__})") from None
    with torch.no_grad():
        want = node.opdef.ref(*examples, **node.attrs)
    want = list(want) if isinstance(want, list | tuple) else [want]
    if len(got) != len(want) or len(want) != len(node.outputs):
        raise ExportError(f"'aten' fallback {target}: torch's export has {len(got)} outputs, "
                          f"the node {len(node.outputs)}")
    for g, w, v in zip(got, want, node.outputs, strict=True):
        w_np = w.detach().numpy()
        if g.shape != w_np.shape or g.dtype != w_np.dtype or tuple(w.shape) != tuple(v.shape):
            raise ExportError(f"'aten' fallback {target}: torch's ONNX export returns "
                              f"{g.dtype}{list(g.shape)} where the op returns "
                              f"{w_np.dtype}{list(w_np.shape)}")
        if not np.allclose(g, w_np, rtol=RTOL, atol=ATOL, equal_nan=True):
            raise ExportError(f"'aten' fallback {target}: torch's ONNX export of it differs "
                              "from the ATen op on a check input; it stays a fallback (run the "
                              "model with accel.compile, or add an IR lowering)")


def _input_index(name: str, n: int) -> int:
    """The position of the one-op module's input called ``name`` (``t_3`` -> 3)."""
    suffix = name.rsplit("_", 1)[-1]
    if not suffix.isdigit() or int(suffix) >= n:
        raise ExportError(f"torch's exporter named an input {name!r}; accel cannot tell which "
                          "of the node's inputs it is")
    return int(suffix)


def _splice(b: OnnxBuilder, node: Node, graph: onnx.GraphProto, inputs: list[str]) -> list[str]:
    """Add ``graph``'s nodes and initializers to ``b``, its inputs bound to ``inputs``."""
    rename = {i.name: inputs[_input_index(i.name, len(inputs))] for i in graph.input}
    prefix = b.current_node or node.name
    for init in graph.initializer:
        copy = onnx.TensorProto()
        copy.CopyFrom(init)
        copy.name = rename[init.name] = b.fresh(f"{prefix}_{init.name}")
        b.initializers.append(copy)
    for n in graph.node:
        for o in n.output:
            if o:
                rename[o] = b.fresh(f"{prefix}_{o}")
        copy = onnx.NodeProto()
        copy.CopyFrom(n)
        copy.name = b.fresh(f"n_{prefix}_{n.op_type.lower()}")
        copy.ClearField("input")
        copy.input.extend(rename.get(i, i) if i else "" for i in n.input)
        copy.ClearField("output")
        copy.output.extend(rename.get(o, o) if o else "" for o in n.output)
        b.nodes.append(copy)
    return [rename[o.name] for o in graph.output]


@onnx_lowering("aten")
def lower_aten(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """An ``aten`` fallback node as the standard ops torch's exporter gives its operator."""
    target = node.attrs.get("target")
    if any(v is None for v in node.inputs):
        raise ExportError(f"'aten' fallback {target} has an absent input")
    if any(is_symbolic(v.shape) for v in node.inputs) or any(
            is_symbolic(v.shape) for v in node.outputs):
        raise ExportError(f"'aten' fallback {target} has symbolic shapes; only static-shape "
                          "fallbacks are exported (through torch's exporter)")
    consts = tuple(b.constant(v) is not None for v in node.inputs)
    key = (target, node.attrs.get("args"), node.attrs.get("kwargs"),
           tuple((tuple(v.shape), v.dtype) for v in node.inputs), consts, b.opset)
    try:
        hash(key)
    except TypeError:
        key = None
    hit = _CACHE.get(key) if key is not None else None
    if hit is None:
        examples = [_example(v, b.constant(v), i)  # type: ignore[arg-type]
                    for i, v in enumerate(node.inputs)]
        try:
            hit = _export_one(node, examples, consts, b.opset)
        except ExportError as e:
            hit = e
        if key is not None and not any(consts):  # a constant's value shaped the export
            _CACHE[key] = hit
    if isinstance(hit, ExportError):
        raise hit
    return _splice(b, node, hit, inputs)
