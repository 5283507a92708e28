"""Hypothesis strategies: random IR graphs built with a ``Rewriter`` and small random models.

``graphs()`` draws a :class:`RandomGraph`: a graph over 1-2 runtime inputs made of registry
ops (pointwise unary/binary with broadcasting, reductions, softmax, layer_norm, linear and
matmul with constant weights, reshape/permute/slice/concat), plus the example inputs to run
it on. Some draws also plant patterns the cleanup passes rewrite (``x * 1``, duplicated
nodes, constant-only subexpressions, reshape chains) so that passes have work to do.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from accel.ir.graph import Graph, Rewriter, Value
from accel.ir.types import TensorType

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
DTYPES = (torch.float32, torch.float32, torch.float16, torch.bfloat16, torch.int64)
"""Graph dtypes, float32 drawn twice as often as the others."""

FLOAT_UNARY = ("neg", "abs", "tanh", "sigmoid", "relu", "gelu", "silu", "sin", "cos", "erf",
               "hardswish", "hardsigmoid", "floor")
INT_UNARY = ("neg", "abs", "relu")
BINARY = ("add", "sub", "mul", "maximum", "minimum")


@dataclass
class RandomGraph:
    """A drawn graph and the inputs to run it on."""

    graph: Graph
    inputs: tuple[torch.Tensor, ...]

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the graph computes in."""
        return self.inputs[0].dtype

    def __repr__(self) -> str:
        shapes = [tuple(t.shape) for t in self.inputs]
        return f"RandomGraph(inputs={shapes}, dtype={self.dtype})\n{self.graph.python()}"


def tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """(atol, rtol) for comparing a rewritten graph with the original in ``dtype``."""
    return {torch.float16: (2e-2, 2e-2), torch.bfloat16: (1e-1, 5e-2),
            torch.int64: (0.0, 0.0)}.get(dtype, (1e-4, 1e-4))


def random_tensor(shape: tuple[int, ...], dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    """Small-magnitude values: normal floats, integers in [-4, 4]."""
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen).to(dtype)
    return torch.randint(-4, 5, shape, generator=gen, dtype=dtype)


class _Builder:
    """Grows a graph one random op at a time, keeping a pool of values to draw from."""

    def __init__(self, draw: Callable, dtype: torch.dtype, gen: torch.Generator) -> None:
        self.draw, self.dtype, self.gen = draw, dtype, gen
        self.rw = Rewriter()
        self.pool: list[Value] = []

    @property
    def is_float(self) -> bool:
        return self.dtype.is_floating_point

    def const(self, shape: tuple[int, ...], name: str = "w") -> Value:
        return self.rw.const(random_tensor(shape, self.dtype, self.gen) * (1 if not self.is_float
                             else 0.5), name)

    def pick(self) -> Value:
        # favour recent values so graphs are deep, not just wide
        i = self.draw(st.integers(0, len(self.pool) - 1))
        return self.pool[max(i, len(self.pool) - 3)] if self.draw(st.booleans()) else self.pool[i]

    def broadcast_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """A shape that broadcasts against ``shape``: a suffix with some dims set to 1."""
        keep = self.draw(st.integers(0, len(shape)))
        suffix = shape[len(shape) - keep:]
        return tuple(1 if self.draw(st.booleans()) else d for d in suffix)

    # ---- op families ---------------------------------------------------------------------
    def unary(self, x: Value) -> Value:
        op = self.draw(st.sampled_from(FLOAT_UNARY if self.is_float else INT_UNARY))
        return self.rw.op(op, x)

    def binary(self, x: Value) -> Value:
        op = self.draw(st.sampled_from(BINARY))
        same = [v for v in self.pool if v.shape == x.shape and v is not x]
        if same and self.draw(st.booleans()):
            other = self.draw(st.sampled_from(same))
        else:
            other = self.const(self.broadcast_shape(x.shape), "b")
        a, b = (x, other) if self.draw(st.booleans()) else (other, x)
        return self.rw.op(op, a, b)

    def reduce(self, x: Value) -> Value:
        if not self.is_float or x.type.rank < 2:
            return self.unary(x)
        op = self.draw(st.sampled_from(("sum", "mean", "amax", "softmax", "layer_norm")))
        dim = self.draw(st.integers(0, x.type.rank - 1))
        if op == "softmax":
            return self.rw.op("softmax", x, dim=dim)
        if op == "layer_norm":
            n = x.shape[-1]
            w, b = self.const((n,), "ln_w"), self.const((n,), "ln_b")
            return self.rw.op("layer_norm", x, w, b, normalized_shape=(n,))
        return self.rw.op(op, x, dims=(dim,), keepdim=self.draw(st.booleans()))

    def contract(self, x: Value) -> Value:
        if not self.is_float:
            return self.binary(x)
        k, n = x.shape[-1], self.draw(st.integers(1, 5))
        if self.draw(st.booleans()):
            bias = self.const((n,), "bias") if self.draw(st.booleans()) else None
            return self.rw.op("linear", x, self.const((n, k), "weight"), bias)
        return self.rw.op("matmul", x, self.const((k, n), "mat"))

    def movement(self, x: Value) -> Value:
        kind = self.draw(st.sampled_from(("reshape", "permute", "slice", "concat")))
        shape, rank = x.shape, x.type.rank
        if kind == "reshape":
            if rank >= 2 and self.draw(st.booleans()):
                new = (*shape[:-2], shape[-2] * shape[-1])
            else:
                new = (*shape[:-1], 1, shape[-1]) if rank < 3 else (math.prod(shape),)
            return self.rw.op("reshape", x, shape=new)
        if kind == "permute":
            dims = tuple(self.draw(st.permutations(range(rank))))
            return self.rw.op("permute", x, dims=dims)
        dim = self.draw(st.integers(0, rank - 1))
        if kind == "slice":
            start = self.draw(st.integers(0, max(0, shape[dim] - 1)))
            end = self.draw(st.integers(start + 1, shape[dim]))
            return self.rw.op("slice", x, dim=dim, start=start, end=end,
                              step=self.draw(st.integers(1, 2)))
        others = [v for v in self.pool if v.type.rank == rank and all(
            a == b for i, (a, b) in enumerate(zip(v.shape, shape, strict=True)) if i != dim)]
        other = self.draw(st.sampled_from(others))
        return self.rw.op("concat", x, other, dim=dim)

    def planted(self, x: Value) -> Value:
        """Patterns the cleanup passes rewrite (their result equals the original)."""
        kind = self.draw(st.sampled_from(("mul_one", "add_zero", "duplicate", "const_expr",
                                          "reshape_chain", "permute_chain")))
        if kind == "mul_one":
            return self.rw.op("mul", x, self.rw.const(torch.ones((), dtype=self.dtype), "one"))
        if kind == "add_zero":
            return self.rw.op("add", self.rw.const(torch.zeros(x.shape[-1:], dtype=self.dtype),
                                                   "zero"), x)
        if kind == "duplicate":
            op = "relu" if not self.is_float else self.draw(st.sampled_from(("tanh", "relu")))
            return self.rw.op("add", self.rw.op(op, x), self.rw.op(op, x))
        if kind == "const_expr":
            c = self.rw.op("abs", self.const(x.shape[-1:], "k"))
            return self.rw.op("sub", x, c)
        if kind == "reshape_chain":
            flat = self.rw.op("reshape", x, shape=(x.type.numel,))
            return self.rw.op("reshape", flat, shape=x.shape)
        dims = tuple(reversed(range(x.type.rank)))
        return self.rw.op("permute", self.rw.op("permute", x, dims=dims), dims=dims)


@st.composite
def graphs(draw: Callable, max_ops: int = 8, dtypes: tuple[torch.dtype, ...] = DTYPES
           ) -> RandomGraph:
    """A random graph of 1..``max_ops`` op groups and the inputs to run it on."""
    dtype = draw(st.sampled_from(dtypes))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    b = _Builder(draw, dtype, gen)
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    n_inputs = draw(st.integers(1, 2))
    inputs = []
    for i in range(n_inputs):
        in_shape = shape if i == 0 or draw(st.booleans()) else b.broadcast_shape(shape) or (1,)
        b.pool.append(b.rw.add_input(f"x{i}", TensorType(in_shape, dtype)))
        inputs.append(random_tensor(in_shape, dtype, gen))
    families = [b.unary, b.binary, b.reduce, b.contract, b.movement, b.planted]
    for _ in range(draw(st.integers(2, max_ops))):
        family = draw(st.sampled_from(families))
        b.pool.append(family(b.pick()))
    # every value nobody reads is an output, so no drawn op is dead code
    read = {v for n in b.rw.nodes for v in n.inputs}
    outputs = [v for v in b.pool[n_inputs:] if v not in read][-3:] or [b.pool[-1]]
    b.rw.set_outputs(outputs)
    return RandomGraph(b.rw.finish("random_graph"), tuple(inputs))


class ConvBN(torch.nn.Sequential):
    """Conv2d followed by BatchNorm2d with non-trivial running statistics."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        bn = torch.nn.BatchNorm2d(cout)
        with torch.no_grad():
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        super().__init__(torch.nn.Conv2d(cin, cout, kernel, padding=kernel // 2), bn)


@st.composite
def models(draw: Callable) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    """A small random ``nn.Sequential`` in eval mode and an input for it.

    Either an MLP (Linear/ReLU/GELU/LayerNorm on [batch, tokens?, features]) or a convnet
    ((Conv+BN)/ReLU blocks, then flatten and a Linear head).
    """
    torch.manual_seed(draw(st.integers(0, 2**31 - 1)))
    batch = draw(st.integers(1, 3))
    layers: list[torch.nn.Module] = []
    if draw(st.booleans()):
        feats = draw(st.integers(2, 12))
        shape = (batch, feats) if draw(st.booleans()) else (batch, draw(st.integers(1, 4)), feats)
        for _ in range(draw(st.integers(1, 5))):
            kind = draw(st.sampled_from(("linear", "relu", "gelu", "layernorm")))
            if kind == "linear":
                out = draw(st.integers(2, 12))
                layers.append(torch.nn.Linear(feats, out, bias=draw(st.booleans())))
                feats = out
            elif kind == "layernorm":
                layers.append(torch.nn.LayerNorm(feats))
            else:
                layers.append(torch.nn.ReLU() if kind == "relu" else torch.nn.GELU())
    else:
        chans, size = draw(st.integers(1, 4)), draw(st.integers(3, 6))
        shape = (batch, chans, size, size)
        for _ in range(draw(st.integers(1, 3))):
            out, kernel = draw(st.integers(1, 6)), draw(st.sampled_from((1, 3)))
            layers.append(ConvBN(chans, out, kernel))
            if draw(st.booleans()):
                layers.append(torch.nn.ReLU())
            chans = out
        layers += [torch.nn.Flatten(), torch.nn.Linear(chans * size * size, 3)]
    model = torch.nn.Sequential(*layers).eval()
    return model, (torch.randn(shape),)
