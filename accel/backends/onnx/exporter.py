"""Graph-level ONNX export: IR graph -> onnx.ModelProto, and atomic writing to disk."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from accel.backends.onnx.builder import OnnxBuilder, onnx_dtype, to_numpy
from accel.backends.onnx.registry import get_lowering
from accel.backends.onnx.torchlib import fallback_exportable, lower_fallback
from accel.errors import ExportError
from accel.ir.graph import Graph, Node, Value
from accel.ir.shapes import format_dim

MIN_OPSET = 17
"""The oldest opset accel exports (LayerNormalization)."""
DEFAULT_OPSET = 18
"""The opset accel exports by default: torch.onnx's default, where every Reduce* op takes
its axes as an input, ScatterElements/ScatterND reduce by max/min and Resize antialiases;
also the oldest opset torch.onnx's exporter (the ``aten`` fallbacks' ONNX) writes."""
EXTERNAL_DATA_BYTES = 2**31 - 1 - (64 << 20)
"""Weights beyond this many bytes go to an external data file (protobuf's 2 GB limit)."""


def unsupported_nodes(graph: Graph) -> list[Node]:
    """Nodes whose op has no ONNX lowering of accel's own (``aten`` fallbacks among them)."""
    return [n for n in graph.nodes if get_lowering(n.op) is None]


def check_exportable(graph: Graph, torch_onnx_fallbacks: bool = False) -> None:
    """Raise :class:`ExportError` naming the first node whose op has no ONNX lowering
    (``torch_onnx_fallbacks``: ``aten`` fallbacks of static types count as lowered, through
    torch.onnx, see :mod:`accel.backends.onnx.torchlib`)."""
    missing = [n for n in unsupported_nodes(graph)
               if not (torch_onnx_fallbacks and fallback_exportable(n))]
    if not missing:
        return
    n = missing[0]
    ops = sorted({m.op for m in missing})
    if n.op == "aten":
        target = n.attrs.get("target")
        what = (f"node {n.name} is an 'aten' fallback ({target}): an ATen op accel has no IR op "
                "for, so it cannot be expressed in ONNX. Add an IR lowering for it in "
                "accel/frontend/aten_map.py, or run the model with accel.compile instead")
    else:
        what = (f"node {n.name} applies op '{n.op}', which has no ONNX lowering. Add one with "
                "@onnx_lowering in accel/backends/onnx/lowerings/, or drop the pass that "
                "introduced it from the pipeline")
    raise ExportError(f"cannot export graph {graph.name} to ONNX: {what} "
                      f"({len(missing)} node(s) without lowering; ops: {', '.join(ops)})")


def _value_info(name: str, v: Value) -> onnx.ValueInfoProto:
    """Typed graph input/output; symbolic dims become named dims (``batch``, ``batch*seq``)."""
    dims: list[int | str] = [d if isinstance(d, int) else format_dim(d) for d in v.shape]
    return helper.make_tensor_value_info(name, onnx_dtype(v.dtype), dims)


def graph_to_onnx(graph: Graph, *, opset: int = DEFAULT_OPSET, int8_weights: str = "u8",
                  input_names: list[str] | None = None,
                  output_names: list[str] | None = None,
                  external_data: Path | None = None,
                  torch_onnx_fallbacks: bool = True) -> onnx.ModelProto:
    """Lower ``graph`` to a checked standard-op ONNX model (weights as initializers).

    The graph's symbolic dims are the model's dynamic axes (named after the symbols); sizes
    the graph computes from them are computed from the inputs' shapes at run time.
    ``int8_weights`` is how int8 weights feed integer matmuls: ``u8`` (default) is exact on
    every host, ``s8`` is faster but exact only where :attr:`HostProfile.u8s8_exact`.
    ``external_data`` (a file path) writes the large initializers' bytes there, straight from
    the graph's tensors, and the model refers to them: no in-memory copy of the weights.
    ``torch_onnx_fallbacks``: ``aten`` fallback nodes (ops accel has no IR op for) take their
    ONNX form from torch.onnx's exporter (:mod:`accel.backends.onnx.torchlib`, opset 18 or
    newer); without it, or where torch.onnx has none, they are an :class:`ExportError`.
    ``opset``: :data:`DEFAULT_OPSET` (18) by default; 17 (:data:`MIN_OPSET`) for older
    runtimes, without max/min scatter reductions, antialiased resizing or fallback nodes.

    A model that updates inputs in place (``graph.meta["input_mutations"]``) gets the model's
    own outputs first, exactly as torch.onnx exports them (it drops the updates), then one
    extra output per updated input holding its new value, named ``<input>_updated``
    (``input0_updated``) and listed in the model's metadata (``accel.input_mutations``:
    ``input0_updated=input0``): ONNX has no in-place semantics, so a caller who keeps
    state (a KV cache, running statistics) feeds that output back in on the next call.
    """
    if not isinstance(opset, int) or isinstance(opset, bool):
        raise ExportError(f"opset={opset!r}: give an int, {MIN_OPSET} or newer")
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old: accel exports opset {MIN_OPSET} or newer "
                          f"(LayerNormalization); the default is {DEFAULT_OPSET}")
    if opset > onnx.defs.onnx_opset_version():
        raise ExportError(f"opset {opset} is newer than the installed onnx package knows "
                          f"(opset {onnx.defs.onnx_opset_version()}); export at "
                          f"{DEFAULT_OPSET} (the default) or upgrade onnx")
    check_exportable(graph, torch_onnx_fallbacks)
    b = OnnxBuilder(opset, int8_weights)
    b.constants = dict(graph.constants)
    names: dict[Value, str] = {}
    in_names = input_names or [f"input{i}" for i in range(len(graph.inputs))]
    mutations = dict(graph.meta.get("input_mutations", ()))
    out_names = output_names or [f"{in_names[mutations[k]]}_updated" if k in mutations
                                 else f"output{k}" for k in range(len(graph.outputs))]
    for n in (*in_names, *out_names):
        b.reserve(n)
    inputs = []
    for v, name in zip(graph.inputs, in_names, strict=True):
        names[v] = name
        inputs.append(_value_info(name, v))
    for sym, (i, axis) in graph.symbol_sources().items():
        b.set_symbol_source(sym, in_names[i], axis)
    for sym, i in graph.count_sources().items():
        b.set_count_source(sym, in_names[i])
    for v in graph.constants:
        names[v] = b.fresh(v.name)
    computed: dict[Value, list[str]] = {}  # counts of values the model computes
    for sym, v in graph.computed_counts().items():
        if v in graph.constants:
            b.set_count_source(sym, names[v])
        else:
            computed.setdefault(v, []).append(sym)
    for node in graph.nodes:
        b.current_node = node.name
        ins = [names[v] if v is not None else "" for v in node.inputs]
        try:
            lowering = get_lowering(node.op)
            if lowering is None:  # an aten fallback (check_exportable let it through)
                lowering = lower_fallback
            outs = lowering(b, node, ins)
        except ExportError as e:
            if node.name in str(e):
                raise
            raise ExportError(f"node {node.name} (op '{node.op}'): {e}") from e
        except Exception as e:  # noqa: BLE001 - re-raised naming the node
            raise ExportError(f"ONNX lowering of node {node.name} (op '{node.op}') failed: "
                              f"{type(e).__name__}: {e}") from e
        if len(outs) != len(node.outputs):
            raise ExportError(f"ONNX lowering of op '{node.op}' returned {len(outs)} values for "
                              f"node {node.name}, which has {len(node.outputs)} outputs")
        names.update(zip(node.outputs, outs, strict=True))
        for v, name in zip(node.outputs, outs, strict=True):
            for sym in computed.get(v, ()):
                b.set_count_source(sym, name)
    b.current_node = "output"
    outputs = []
    for v, name in zip(graph.outputs, out_names, strict=True):
        b.nodes.append(helper.make_node("Identity", [names[v]], [name], name=f"n_{name}"))
        outputs.append(_value_info(name, v))
    used = {i for n in b.nodes for i in n.input}
    consts = [(names[v], t) for v, t in graph.constants.items() if names[v] in used]
    if external_data is not None:
        inits = _write_external(external_data, consts, [t for t in b.initializers
                                                         if t.name in used])
    else:
        inits = [numpy_helper.from_array(to_numpy(t), name) for name, t in consts]
        inits += [t for t in b.initializers if t.name in used]
    g = helper.make_graph(b.nodes, graph.name, inputs, outputs, initializer=inits)
    opset_ids = [helper.make_opsetid("", opset)]
    model = helper.make_model(g, opset_imports=opset_ids, producer_name="accel",
                              ir_version=_ir_version(opset_ids))
    if mutations:
        helper.set_model_props(model, {"accel.input_mutations": ",".join(
            f"{out_names[k]}={in_names[i]}" for k, i in sorted(mutations.items()))})
    if external_data is None and _fits(inits):  # larger models are checked from disk
        onnx.checker.check_model(model)
    return model


def _ir_version(opset_ids: list[onnx.OperatorSetIdProto]) -> int:
    """The oldest IR version that carries ``opset_ids`` (8 for opsets 17 and 18): the one
    the widest range of runtimes (onnxruntime, OpenVINO) load; onnx's own default is the
    newest IR it knows, which older runtimes refuse."""
    return max(8, helper.find_min_ir_version_for(opset_ids))


_EXTERNAL_MIN_BYTES = 1024
_ALIGN = 4096
"""Offsets of external tensors are page-aligned, so runtimes can map them."""


def _write_external(path: Path, consts: list[tuple[str, torch.Tensor]],
                    built: list[onnx.TensorProto]) -> list[onnx.TensorProto]:
    """Initializers for ``consts`` and ``built``, large ones as references into ``path``."""
    out: list[onnx.TensorProto] = []
    with open(path, "wb") as f:
        def external(name: str, dtype: int, dims: Sequence[int], data: memoryview | bytes
                     ) -> onnx.TensorProto:
            pad = -f.tell() % _ALIGN
            f.write(b"\0" * pad)
            offset = f.tell()
            f.write(data)
            t = onnx.TensorProto(name=name, data_type=dtype, dims=list(dims),
                                 data_location=onnx.TensorProto.EXTERNAL)
            for key, value in (("location", path.name), ("offset", str(offset)),
                               ("length", str(len(data)))):
                entry = t.external_data.add()
                entry.key, entry.value = key, value
            return t

        for name, tensor in consts:
            arr = np.ascontiguousarray(to_numpy(tensor))
            if arr.nbytes < _EXTERNAL_MIN_BYTES or arr.dtype == object:
                out.append(numpy_helper.from_array(arr, name))
                continue
            proto_type = helper.np_dtype_to_tensor_dtype(arr.dtype)
            out.append(external(name, proto_type, arr.shape, memoryview(arr).cast("B")))
        for t in built:
            if len(t.raw_data) < _EXTERNAL_MIN_BYTES:
                out.append(t)
                continue
            out.append(external(t.name, t.data_type, t.dims, t.raw_data))
    return out


def _fits(inits: list[onnx.TensorProto]) -> bool:
    return sum(len(t.raw_data) for t in inits) < EXTERNAL_DATA_BYTES


def check_writable(path: str | os.PathLike) -> Path:
    """Raise :class:`ExportError` unless a file can be written at ``path``; returns its dir."""
    path = Path(path)
    directory = path.parent
    if path.is_dir():
        raise ExportError(f"cannot write ONNX model to {path}: it is a directory; give a file "
                          "path such as model.onnx")
    if not directory.is_dir():
        raise ExportError(f"cannot write ONNX model to {path}: directory {directory} does not "
                          "exist; create it or choose another path")
    if not os.access(directory, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ExportError(f"cannot write ONNX model to {path}: permission denied; choose a "
                          "writable path")
    return directory


def save_model(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Write ``model`` atomically (temp file + os.replace); external data when over 2 GB."""
    path = Path(path)
    directory = check_writable(path)
    large = not _fits(list(model.graph.initializer))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    data_name = f"{path.name}.data"
    tmp_data = directory / f".{data_name}.tmp"
    try:
        if large:
            onnx.save_model(model, tmp, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=tmp_data.name, size_threshold=1024)
            onnx.checker.check_model(tmp)
            _relocate_external_data(tmp, tmp_data.name, data_name)
            os.replace(tmp_data, directory / data_name)
        else:
            onnx.save_model(model, tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise ExportError(f"cannot write ONNX model to {path}: {e}") from e
    finally:
        for leftover in (Path(tmp), tmp_data):
            if leftover.exists():
                leftover.unlink()
    return path


def _relocate_external_data(model_path: str, old: str, new: str) -> None:
    """Point a saved model's external-data entries from ``old`` to ``new`` (file names)."""
    m = onnx.load_model(model_path, load_external_data=False)
    for t in m.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location" and entry.value == old:
                entry.value = new
    with open(model_path, "wb") as f:
        f.write(m.SerializeToString())


def export_file(graph: Graph, *, int8_weights: str = "u8") -> Path:
    """``graph`` as an ONNX file in a new temporary directory (the caller removes it, e.g.
    ``shutil.rmtree(path.parent)``), its weights in ``model.onnx.data`` next to it, written
    straight from the graph's tensors (no in-memory copy of the model). Runtimes that load
    a model from files map or copy its weights once; loading from bytes in memory keeps a
    second copy alive."""
    directory = Path(tempfile.mkdtemp(prefix="accel-onnx-"))
    try:
        path = directory / "model.onnx"
        model = graph_to_onnx(graph, int8_weights=int8_weights,
                              external_data=directory / "model.onnx.data",
                              torch_onnx_fallbacks=False)  # the cpu target runs them in aten
        onnx.save_model(model, path)
        onnx.checker.check_model(str(path))
        return path
    except onnx.checker.ValidationError as e:
        shutil.rmtree(directory, ignore_errors=True)
        raise ExportError(f"graph {graph.name}: the exported ONNX model is invalid: "
                          f"{str(e).splitlines()[0]}") from e
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
