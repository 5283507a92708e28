"""Import an ATen-level ``torch.fx`` graph into an :class:`accel.ir.Graph`.

Placeholders are bound either to runtime inputs or to constant tensors (frozen weights).
Each call is normalised by a handler of :mod:`accel.frontend.aten_map`; an op without one
(or a call its handler declines) becomes an ``aten`` fallback node. Calls with no tensor
inputs (``arange``, ``full``...) are evaluated at import time into constants.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import sympy
import torch
import torch.fx as fx
from torch.utils._pytree import tree_flatten, tree_map

from accel.errors import CaptureError
from accel.frontend import aten_map
from accel.frontend.dynamic import to_dim
from accel.ir.graph import Graph, Rewriter, Value
from accel.ir.ops.fallback import TensorArg
from accel.ir.ops.registry import freeze
from accel.ir.shapes import SymbolInfo, is_symbolic
from accel.ir.types import TensorType

_SKIP = {
    torch.ops.aten._assert_tensor_metadata.default,
    torch.ops.aten._assert_scalar.default,
    torch.ops.aten.sym_constrain_range_for_size.default,
    torch.ops.aten._assert_async.msg,
}


def import_fx(
    gm: fx.GraphModule,
    bindings: Mapping[str, tuple[str, Any]],
    name: str = "graph",
    output_structure: Any = None,
    rename: Mapping[sympy.Symbol, sympy.Symbol] | None = None,
    symbols: Mapping[str, SymbolInfo] | None = None,
    mutations: Mapping[int, str] | None = None,
) -> Graph:
    """Import ``gm``. ``bindings[placeholder] = ("input", example) | ("const", tensor)``.

    A third element names a constant (its parameter path). ``("value", obj)`` binds a
    non-tensor placeholder (an int, a None) to a Python value. For a graph traced with
    symbolic sizes, ``rename`` maps torch's size symbols to accel's and ``symbols`` is the
    symbol table: inputs get symbolic types, and size computations (``sym_size``, arithmetic
    on sizes) become expressions in the attributes of the nodes that use them.
    ``mutations`` maps the positions of the fx graph's outputs that are the new values of
    inputs updated in place to those inputs' placeholders: they become extra graph outputs
    after the model's own, recorded in ``meta["input_mutations"]`` as (graph output, graph
    input) pairs, and are not part of the output structure.
    """
    rw = Rewriter()
    rename = dict(rename or {})
    if symbols:
        rw.meta["symbols"] = MappingProxyType(dict(symbols))
    ctx = aten_map.ImportContext(rw)
    ctx.rename = rename  # handlers bind the sizes that depend on the data here
    env: dict[fx.Node, Any] = {}
    mutations = dict(mutations or {})
    by_placeholder: dict[str, Value] = {}
    for node in gm.graph.nodes:
        val = node.meta.get("val")
        if node.op == "placeholder":
            kind, obj, *label = bindings[node.name]
            if kind == "input":
                t = TensorType.of(obj)
                if rename and isinstance(val, torch.Tensor):
                    t = t.with_shape(tuple(to_dim(d, rename, symbols) for d in val.shape))
                env[node] = by_placeholder[node.name] = rw.add_input(node.name, t)
            elif kind == "const":
                env[node] = rw.const(obj, label[0] if label else node.name)
            else:
                env[node] = obj
        elif node.op == "get_attr":
            obj = _fetch_attr(gm, node.target)
            env[node] = rw.const(obj, node.target) if isinstance(obj, torch.Tensor) else obj
        elif node.op == "call_function" and isinstance(val, torch.SymInt):
            env[node] = to_dim(val, rename, symbols)  # a size computation: an expression
        elif node.op == "call_function" and isinstance(val, torch.SymBool | torch.SymFloat):
            env[node] = None  # only read by runtime assertions on sizes (the guards' job)
        elif node.op == "call_function":
            env[node] = _import_call(ctx, node, env, rename, symbols)
        elif node.op == "output":
            results = node.args[0]
            updated: list[tuple[Value, Value]] = []  # (new value, the input it updates)
            if mutations:
                updated = [(_as_value(env[results[k]], node), by_placeholder[p])
                           for k, p in sorted(mutations.items())]
                results = [r for k, r in enumerate(results) if k not in mutations]
            flat, _ = tree_flatten(tree_map(lambda n: env[n] if isinstance(n, fx.Node) else n,
                                            results))
            outs: list[Value] = []
            leaves: list[Any] = []  # index into outputs, or ("py", constant leaf)
            for v in flat:
                if isinstance(v, Value):
                    leaves.append(len(outs))
                    outs.append(v)
                else:
                    leaves.append(("py", v))
            if updated:
                pairs = []
                for new, inp in updated:
                    pairs.append((len(outs), rw.inputs.index(inp)))
                    outs.append(new)
                rw.meta["input_mutations"] = tuple(pairs)
            rw.set_outputs(outs)
            rw.meta["output_leaves"] = tuple(leaves)
        else:
            raise CaptureError(f"unsupported fx node kind '{node.op}' at node {node.name}")
    if output_structure is not None:
        rw.meta["output_structure"] = output_structure
    return rw.finish(name)


def _as_value(v: Any, node: fx.Node) -> Value:
    if not isinstance(v, Value):
        raise CaptureError(f"node {node.name}: the new value of an input updated in place is "
                           f"not a tensor of the graph ({type(v).__name__})")
    return v


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _traced_shapes(node: fx.Node, rename: Mapping[sympy.Symbol, sympy.Symbol],
                   symbols: Mapping[str, SymbolInfo] | None
                   ) -> tuple[tuple[Any, ...], ...] | None:
    """The output shapes torch traced for ``node``, when traced with symbolic sizes."""
    if not rename:
        return None
    val = node.meta.get("val")
    vals = val if isinstance(val, list | tuple) else (val,)
    return tuple(tuple(to_dim(d, rename, symbols) for d in v.shape) for v in vals
                 if isinstance(v, torch.Tensor))


def _import_call(ctx: aten_map.ImportContext, node: fx.Node, env: dict[fx.Node, Any],
                 rename: Mapping[sympy.Symbol, sympy.Symbol],
                 symbols: Mapping[str, SymbolInfo] | None = None) -> Any:
    target = node.target
    args = tree_map(lambda n: env[n] if isinstance(n, fx.Node) else n, node.args)
    kwargs = tree_map(lambda n: env[n] if isinstance(n, fx.Node) else n, dict(node.kwargs))
    if target is operator.getitem:
        seq, idx = args
        item = seq[idx]
        if item is None:
            raise CaptureError(f"node {node.name}: output {idx} of {node.args[0]} has no IR "
                               "lowering")
        return item
    if target in _SKIP:
        return None
    if not isinstance(target, torch._ops.OpOverload):  # noqa: SLF001
        raise CaptureError(f"node {node.name}: call to {target} is not an ATen op; capture "
                           "with accel.compile or torch.export first")
    meta = _source_meta(node)
    flat, _ = tree_flatten((args, kwargs))
    if (not any(isinstance(a, Value) for a in flat) and _deterministic(target)
            and not is_symbolic(tuple(flat))):
        return _evaluate_constant(ctx, node, target, args, kwargs)
    handler = aten_map.lookup(target)
    if handler is not None:
        mark = len(ctx.rw.nodes)
        ctx.out_shapes = _traced_shapes(node, rename, symbols)
        ctx.traced = node.meta.get("val")
        try:
            result = handler(ctx, *args, **kwargs)
            missing = _missing_outputs(node, result)
            if missing:  # a multi-output op lowers all the outputs used, or falls back whole
                raise aten_map.Unsupported(f"output {missing[0]} has no IR lowering")
        except aten_map.Unsupported as e:
            del ctx.rw.nodes[mark:]
            meta = {**meta, "fallback_reason": str(e)}
        else:
            _stamp(ctx.rw, mark, meta)
            return result
    return _fallback(ctx, node, target, args, kwargs, meta)


def _missing_outputs(node: fx.Node, result: Any) -> list[int]:
    """Indices of outputs the handler left out (``None``) that the graph uses."""
    if not isinstance(result, list | tuple) or all(r is not None for r in result):
        return []
    if all(u.target is operator.getitem for u in node.users):
        used = {u.args[1] for u in node.users}
    else:  # the tuple itself is used (returned, say): every output is
        used = set(range(len(result)))
    return sorted(i for i in used if isinstance(i, int) and i < len(result) and result[i] is None)


def _source_meta(node: fx.Node) -> dict[str, Any]:
    meta: dict[str, Any] = {"aten": str(node.target)}
    stack = node.meta.get("nn_module_stack")
    if stack:
        path = list(stack.values())[-1][0]
        meta["source"] = path.removeprefix("L['self'].").removeprefix("L['fn'].")
    return meta


def _stamp(rw: Rewriter, mark: int, meta: dict[str, Any]) -> None:
    from types import MappingProxyType

    from accel.ir.graph import Node

    for i in range(mark, len(rw.nodes)):
        n = rw.nodes[i]
        rw.nodes[i] = Node(n.op, n.inputs, n.attrs, n.outputs, n.name,
                           MappingProxyType({**meta, **n.meta}))


def _deterministic(target: torch._ops.OpOverload) -> bool:  # noqa: SLF001
    return torch.Tag.nondeterministic_seeded not in target.tags


def _evaluate_constant(ctx: aten_map.ImportContext, node: fx.Node, target: Any, args: Any,
                       kwargs: Any) -> Any:
    try:
        out = target(*args, **kwargs)
    except Exception as e:  # noqa: BLE001
        raise CaptureError(f"node {node.name}: could not evaluate {target} at capture: {e}") from e
    return tree_map(lambda t: ctx.rw.const(t, node.name) if isinstance(t, torch.Tensor) else t,
                    out)


def _fallback(ctx: aten_map.ImportContext, node: fx.Node, target: Any, args: Any, kwargs: Any,
              meta: dict[str, Any]) -> Any:
    tensors: list[Value] = []

    def slot(x: Any) -> Any:
        if isinstance(x, Value):
            tensors.append(x)
            return TensorArg(len(tensors) - 1)
        if isinstance(x, list | tuple):
            return tuple(slot(y) for y in x)
        return x

    t_args = tuple(slot(a) for a in args)
    t_kwargs = tuple((k, slot(v)) for k, v in kwargs.items())
    try:
        n = ctx.rw.node("aten", *tensors, target=target, args=freeze(t_args),
                        kwargs=freeze(t_kwargs), name=node.name, meta=meta)
    except Exception as e:  # noqa: BLE001
        raise CaptureError(f"node {node.name}: ATen op {target} has no IR lowering and could "
                           f"not run as a fallback: {e}") from e
    if isinstance(node.meta.get("val"), list | tuple):
        return list(n.outputs)
    return n.outputs[0] if len(n.outputs) == 1 else list(n.outputs)
