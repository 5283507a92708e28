"""Print a graph as readable, runnable Python.

The printed function calls the reference implementation of each op through ``ops``, so a
dump is also a reproduction: ``exec`` it, pass the inputs and constants, compare.

    def graph(x: "f32[2,8]", *, fc_weight: "f32[4,8]", fc_bias: "f32[4]"):
        linear = ops.linear(x, fc_weight, fc_bias)  # f32[2,4]
        relu = ops.relu(linear)  # f32[2,4]
        return (relu,)
"""

from __future__ import annotations

import enum
import re
from typing import TYPE_CHECKING, Any

import sympy
import torch

from accel.ir.ops import all_ops
from accel.ir.ops.fallback import TensorArg

if TYPE_CHECKING:
    from accel.ir.graph import Graph


class _Ops:
    """Namespace exposing each op's reference implementation as ``ops.<name>``."""

    def __getattr__(self, name: str) -> Any:
        return all_ops()[name].ref


ops = _Ops()
"""Reference implementations by op name, as called by printed graphs."""


def format_attr(value: Any) -> str:
    """Python source for an attribute value."""
    if isinstance(value, sympy.Basic):  # a symbolic size, computed from the bound symbols
        from torch.utils._sympy.printers import PythonPrinter

        return PythonPrinter().doprint(value)
    if isinstance(value, torch.dtype):
        return str(value)  # torch.float32
    if isinstance(value, TensorArg):
        return f"TensorArg({value.index})"
    if isinstance(value, torch._ops.OpOverload):  # noqa: SLF001
        return f"torch.ops.{value._schema.name.replace('::', '.')}.{value._overloadname}"  # noqa: SLF001
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, tuple):
        inner = ", ".join(format_attr(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return f"float('{value}')"
    return repr(value)


def print_graph(graph: Graph) -> str:
    """The graph as a Python function definition (see module docstring)."""
    params = [f'{v.name}: "{v.type}"' for v in graph.inputs]
    consts = [f'{v.name}: "{v.type}"' for v in graph.constants]
    parts = params + (["*", *consts] if consts else [])
    sig = ", ".join(parts) if len(parts) <= 4 else "\n" + "".join(f"    {p},\n" for p in parts)
    lines = [
        f"# {graph.name}: {len(graph.nodes)} nodes, {len(graph.constants)} constants, "
        f"{graph.num_params():,} parameters, {graph.flops():,} FLOPs",
        f"def {graph.name if graph.name.isidentifier() else 'graph'}({sig}):",
    ]
    for name, (i, axis) in graph.symbol_sources().items():
        v = graph.inputs[i]
        lines.append(f"    {name} = {v.name}.shape[{axis}]  # {graph.symbols[name].describe()}"
                     if name in graph.symbols else f"    {name} = {v.name}.shape[{axis}]")
    computed: dict[Any, list[str]] = {}
    for name, v in graph.counted_symbols().items():
        if v in graph.inputs or v in graph.constants:
            lines.append(f"    {name} = int(torch.count_nonzero({v.name}))  # counted")
        else:
            computed.setdefault(v, []).append(name)
    for n in graph.nodes:
        args = [v.name if v is not None else "None" for v in n.inputs]
        args += [f"{k}={format_attr(v)}" for k, v in n.attrs.items()]
        lhs = ", ".join(o.name for o in n.outputs) + ("," if len(n.outputs) > 1 else "")
        types = ", ".join(str(o.type) for o in n.outputs)
        ann = "".join(f" {k}={v!r}" for k, v in n.outputs[0].annotations.items())
        lines.append(f"    {lhs} = ops.{n.op}({', '.join(args)})  # {types}{ann}")
        lines.extend(f"    {name} = int(torch.count_nonzero({o.name}))  # counted"
                     for o in n.outputs for name in computed.get(o, ()))
    outs = ", ".join(v.name for v in graph.outputs)
    lines.append(f"    return ({outs},)" if len(graph.outputs) == 1 else f"    return ({outs})")
    return "\n".join(lines) + "\n"


def exec_printed(source: str) -> Any:
    """Compile printed graph source and return the function it defines."""
    namespace: dict[str, Any] = {"ops": ops, "torch": torch, "TensorArg": TensorArg,
                                 "math": __import__("math")}
    exec(compile(source, "<accel graph>", "exec"), namespace)  # noqa: S102
    match = re.search(r"^def (\w+)\(", source, re.MULTILINE)
    if match is None:
        raise ValueError("source has no function definition; pass the output of graph.python()")
    return namespace[match.group(1)]
